"""The system tests run real `orchestra server` and `orchestra worker` processes on a real
database, driven over the HTTP API and the CLI: each test gets a fresh database of each engine
and a Cluster on it (the fixtures of tests/support/fixtures.py)."""

from __future__ import annotations

import pytest

from tests.support.databases import ENGINES


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)
