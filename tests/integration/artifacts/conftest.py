"""Fixtures of the artifact tests: each test on both engines and both stores, a folder and an
S3-compatible server started by the tests (tests/support/s3.py), with small limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestra.services.container import Services
from orchestra.settings import load_settings
from tests.helpers import RecordingClient
from tests.support.artifact_world import MAX_FILE, MAX_RUN, World
from tests.support.s3 import S3Server, s3_server  # noqa: F401  (a fixture)


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_settings(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if store == "file":
        return {"artifacts_url": f"file://{tmp_path / 'kept'}"}
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = s3.new_bucket()
    return {"artifacts_url": f"s3://{bucket}/some/prefix", "s3_endpoint_url": s3.endpoint_url}


@pytest.fixture
async def services(
    database_url: str, tmp_path: Path, store_settings: dict[str, Any]
) -> AsyncIterator[Services]:
    settings = load_settings(
        {
            "database_url": database_url,
            "data_dir": tmp_path,
            "artifact_max_file_bytes": MAX_FILE,
            "artifact_max_run_bytes": MAX_RUN,
            **store_settings,
        },
        environ={},
    )
    built = Services.build(settings)
    yield built
    await built.close()


@pytest.fixture
async def world(services: Services, api: RecordingClient) -> World:
    built = World(services, api)
    await built.setup()
    return built
