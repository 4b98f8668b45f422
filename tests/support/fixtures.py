"""The fixtures of the suites that run real processes (tests/system, tests/proof), as a pytest
plugin that tests/conftest.py loads: bootstrapped databases of each engine, and the Cluster of
one test, whose process logs are shown when the test fails. A suite says which engines its tests
run on with an `engine` fixture, and may build a Cluster of its own with `cluster_class`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.accounts import Credentials
from tests.support.cluster import TEST_SETTINGS, Cluster
from tests.support.databases import ClusterDatabases
from tests.support.processes import TaggedProcesses


@pytest.fixture(scope="session")
def cluster_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDatabases]:
    """Bootstrapping (migrating, and creating the administrator and the workers' user with the
    real `orchestra admin` commands) takes seconds: once per engine and xdist worker."""
    databases = ClusterDatabases(tmp_path_factory.mktemp("cluster-templates"))
    yield databases
    databases.close()


@pytest.fixture
def system_database(
    engine: str, cluster_databases: ClusterDatabases, tmp_path: Path
) -> Iterator[tuple[str, Credentials]]:
    """A fresh bootstrapped database of `engine` for one test: (URL, credentials)."""
    with cluster_databases.database(engine, tmp_path) as database:
        yield database


@pytest.fixture
def cluster_class() -> type[Cluster]:
    return Cluster


@pytest.fixture
def cluster(
    system_database: tuple[str, Credentials], cluster_class: type[Cluster], tmp_path: Path
) -> Iterator[Cluster]:
    """The processes of this test, with short settings; nothing is started yet (tests call
    `cluster.start(...)`)."""
    url, credentials = system_database
    built = cluster_class(tmp_path, url, credentials, TEST_SETTINGS)
    try:
        yield built
    finally:
        built.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tails of the process logs to the report of a failed (or xfailed) test."""
    report = yield
    if report.failed or hasattr(report, "wasxfail"):
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, TaggedProcesses):
                report.sections.append(("orchestra processes", value.log_tails()))
    return report
