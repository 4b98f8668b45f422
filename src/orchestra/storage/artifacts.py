"""Artifacts' rows read with runs (services/artifacts.py has the rest)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.models import Run
from orchestra.storage.schema import artifact as artifact_table


async def artifacts_of(conn: AsyncConnection, runs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The stored files of these runs, by run, in one query (for pages of runs)."""
    if not runs:
        return {}
    query = (
        sa.select(
            artifact_table.c.run,
            artifact_table.c.path,
            artifact_table.c.size,
            artifact_table.c.sha256,
        )
        .where(artifact_table.c.run.in_(runs))
        .order_by(artifact_table.c.run, artifact_table.c.path)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in (await conn.execute(query)).all():
        found.setdefault(row.run, []).append(
            {"path": row.path, "size": int(row.size), "sha256": row.sha256}
        )
    return found


async def with_artifacts(conn: AsyncConnection, runs: list[Run]) -> list[Run]:
    """These runs with their stored files (one query for them all; none if no run is final or
    running)."""
    found = await artifacts_of(conn, [r.identifier for r in runs if r.start_date is not None])
    if not found:
        return runs
    return [replace(r, artifacts=found[r.identifier]) if r.identifier in found else r for r in runs]
