"""What a pipeline node's run fetches before its first step (docs/artifacts.md): the stored
artifacts of its direct needs' runs (each need's latest attempt), read in three statements for
a whole batch of runs being assigned, whatever their number."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.models import Run
from orchestra.domain.pipeline_progress import needs_of
from orchestra.storage.schema import artifact as artifact_table
from orchestra.storage.schema import pipeline_run as pipeline_run_table
from orchestra.storage.schema import run as run_table


async def inputs_of(conn: AsyncConnection, runs: Sequence[Run]) -> dict[str, list[dict[str, Any]]]:
    """run -> [{run, project, path, size, sha256}] for the runs of pipeline nodes among `runs`
    whose needs stored artifacts (in the order of the node's needs, then of the paths)."""
    nodes = [r for r in runs if r.pipeline_run is not None and r.pipeline_node is not None]
    if not nodes:
        return {}
    pipelines = sorted({str(r.pipeline_run) for r in nodes})
    definitions = {
        row.identifier: {str(n.get("identifier")): n for n in row.nodes or ()}
        for row in await conn.execute(
            sa.select(pipeline_run_table.c.identifier, pipeline_run_table.c.nodes).where(
                pipeline_run_table.c.identifier.in_(pipelines)
            )
        )
    }
    needs: dict[str, list[str]] = {}
    for run in nodes:
        node = definitions.get(str(run.pipeline_run), {}).get(str(run.pipeline_node))
        if node is not None and needs_of(node):
            needs[run.identifier] = needs_of(node)
    if not needs:
        return {}
    latest: dict[tuple[str, str], tuple[int, str, str]] = {}  # (pipeline run, node) -> run
    for attempt in await conn.execute(
        sa.select(
            run_table.c.identifier,
            run_table.c.project,
            run_table.c.pipeline_run,
            run_table.c.pipeline_node,
            run_table.c.attempt,
        ).where(run_table.c.pipeline_run.in_(pipelines))
    ):
        key = (str(attempt.pipeline_run), str(attempt.pipeline_node))
        if attempt.pipeline_node is not None and (
            key not in latest or attempt.attempt > latest[key][0]
        ):
            latest[key] = (attempt.attempt, attempt.identifier, attempt.project)
    wanted = {
        latest[(str(run.pipeline_run), need)][1]
        for run in nodes
        for need in needs.get(run.identifier, ())
        if (str(run.pipeline_run), need) in latest
    }
    if not wanted:
        return {}
    files: dict[str, list[dict[str, Any]]] = {}
    for stored in await conn.execute(
        sa.select(
            artifact_table.c.run,
            artifact_table.c.path,
            artifact_table.c.size,
            artifact_table.c.sha256,
        )
        .where(artifact_table.c.run.in_(sorted(wanted)))
        .order_by(artifact_table.c.run, artifact_table.c.path)
    ):
        files.setdefault(stored.run, []).append(
            {"path": stored.path, "size": stored.size, "sha256": stored.sha256}
        )
    found: dict[str, list[dict[str, Any]]] = {}
    for run in nodes:
        for need in needs.get(run.identifier, ()):
            entry = latest.get((str(run.pipeline_run), need))
            if entry is None:
                continue
            _, need_run, project = entry
            for item in files.get(need_run, ()):
                found.setdefault(run.identifier, []).append(
                    {"run": need_run, "project": project, **item}
                )
    return found
