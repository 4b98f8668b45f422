"""The inputs of the runs being assigned (docs/artifacts.md): a pipeline node's run gets the
artifacts of its direct needs' runs in its assignment, to fetch before its first step. Runs of
no pipeline cost nothing: the database is read only when a batch holds some of a pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestra.domain.models import Run
from orchestra.storage.artifact_inputs import inputs_of
from orchestra.storage.engine import Database


class RunInputs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def of(self, runs: Sequence[Run]) -> dict[str, list[dict[str, Any]]]:
        """run -> its needs' artifacts [{run, project, path, size, sha256}] (runs with none
        are left out)."""
        if not any(r.pipeline_run is not None for r in runs):
            return {}
        async with self.db.read() as conn:
            return await inputs_of(conn, runs)
