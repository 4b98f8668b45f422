"""Alembic migrations: an empty database reaches head, a second upgrade changes nothing, and the
migrated schema is exactly orchestra.storage.schema.metadata, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from orchestra.storage.engine import sync_url
from orchestra.storage.migrate import alembic_config, current_revision, head_revision, upgrade
from orchestra.storage.schema import metadata
from orchestra.storage.schema import run as run_table
from tests.conftest import build_services
from tests.support.databases import PostgresDatabases


@pytest.fixture
def empty_database_url(
    engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A database with no tables at all."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'empty.sqlite'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create(migrated=False)
    yield url
    databases.drop(url)


def snapshot(url: str) -> dict[str, Any]:
    """Tables, columns, indexes and foreign keys as the database reports them."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        return {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
                ],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)
                ),
                "foreign_keys": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in inspector.get_foreign_keys(table)
                ),
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            }
            for table in sorted(inspector.get_table_names())
        }
    finally:
        engine.dispose()


def differences(url: str) -> list[Any]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migration_upgrade_of_an_empty_database_reaches_head(empty_database_url: str) -> None:
    assert head_revision() is not None
    upgrade(empty_database_url)
    assert current_revision(empty_database_url) == head_revision()
    tables = set(snapshot(empty_database_url))
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migration_second_upgrade_changes_nothing(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    before = snapshot(empty_database_url)
    upgrade(empty_database_url)
    assert current_revision(empty_database_url) == head_revision()
    assert snapshot(empty_database_url) == before


def test_migration_schema_matches_the_metadata(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    assert differences(empty_database_url) == []


def test_migration_comparison_sees_a_missing_table(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = sa.create_engine(sync_url(empty_database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE run_log"))
    finally:
        engine.dispose()
    found = differences(empty_database_url)
    assert [d[0] for d in found if d[0] == "add_table"] == ["add_table"]


def test_migration_0005_links_the_runs_retried_before_it(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Runs retried under revision 0004 get `retried_by` from their retry's `retry_of`; the
    downgrade drops the column and the upgrade fills it again."""
    upgrade(empty_database_url)

    async def two_attempts() -> tuple[str, str, str]:
        services = build_services(empty_database_url, tmp_path)
        try:
            await services.projects.create_project({"identifier": "p"})
            job = {"identifier": "j", "steps": [{"name": "s", "command": ["true"]}]}
            await services.projects.create_job("p", job)
            source = {"type": "api", "user": "admin"}
            first, second, alone = [
                (await services.runs.trigger("p", "j", {}, source)).identifier for _ in range(3)
            ]
            async with services.db.transaction() as conn:
                await conn.execute(
                    sa.update(run_table)
                    .where(run_table.c.identifier == second)
                    .values(retry_of=first, attempt=2)
                )
            return first, second, alone
        finally:
            await services.close()

    first, second, alone = asyncio.run(two_attempts())
    command.downgrade(alembic_config(empty_database_url), "0004")
    assert "retried_by" not in {c[0] for c in snapshot(empty_database_url)["run"]["columns"]}
    upgrade(empty_database_url)
    engine = sa.create_engine(sync_url(empty_database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            links = dict(
                conn.execute(sa.select(run_table.c.identifier, run_table.c.retried_by)).all()
            )
    finally:
        engine.dispose()
    assert links == {first: second, second: None, alone: None}
