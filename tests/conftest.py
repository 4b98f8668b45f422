"""Fixtures shared by every tier: real SQLite and PostgreSQL databases migrated once per session,
the services and the in-process API built on them, and user factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestra.services.container import Services
from orchestra.settings import load_settings
from orchestra.web.app import create_app
from tests.helpers import ManualClock, RecordingClient, leaks
from tests.support.databases import ENGINES, PostgresDatabases, SqliteTemplate

MakeUser = Callable[..., Awaitable[str]]
# The fixtures of the tests that run real processes: bootstrapped databases and clusters.
pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.close()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(engine_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each engine for one test."""
    if engine_name == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield template.copy(tmp_path)
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    yield url
    databases.drop(url)


def build_services(database_url: str, data_dir: Path, clock: object = None) -> Services:
    settings = load_settings({"database_url": database_url, "data_dir": data_dir}, environ={})
    return Services.build(settings, clock)  # type: ignore[arg-type]


@pytest.fixture
async def services(database_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    built = build_services(database_url, tmp_path)
    yield built
    await built.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def clocked_services(
    database_url: str, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Services]:
    """Services on a clock the test moves."""
    built = build_services(database_url, tmp_path, clock)
    yield built
    await built.close()


@pytest.fixture
async def api(services: Services) -> AsyncIterator[RecordingClient]:
    """The application in process; every exchange is recorded and scanned for leaks after."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        client = RecordingClient(http)
        yield client
    problems = leaks(client.exchanges)
    assert not problems, problems


@pytest.fixture
def make_user(services: Services) -> MakeUser:
    """Create a user with these roles (and a password only when asked: hashing is slow) and
    return the secret of a new token of theirs."""

    async def make(
        identifier: str,
        roles: list[str] | tuple[str, ...] = (),
        password: str | None = None,
        *,
        is_enabled: bool = True,
    ) -> str:
        await services.users.create_user(
            identifier, roles=list(roles), password=password, is_enabled=is_enabled
        )
        _token, secret = await services.users.create_token(identifier, "test", None)
        return secret

    return make


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "schemathesis: the schemathesis run against the OpenAPI document (slow)"
    )
    # Used by tests/proof at import time, before that directory's own hooks run.
    config.addinivalue_line("markers", "alone: run by itself, after the rest (make soak)")
