"""Pipeline runs: trigger, advance, approve or reject, cancel, list and show.

Advancing locks the pipeline run's row (PostgreSQL; SQLite has one writer), brings each job
node's status to its latest run's, asks domain/pipeline_progress.py what happens next and
writes it in the same transaction: a job node starts by a guarded update of its row from
`pending` with no run, and its run is inserted only by the transaction whose update won, so a
node starts exactly once whatever the number of masters. A pipeline run holds no executor: only
its job nodes' runs do, each while it runs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain import pipeline_progress as progress
from orchestra.domain.identifiers import check_identifier
from orchestra.domain.models import Row
from orchestra.domain.pages import Listing
from orchestra.domain.parameters import parse_parameters, resolve_parameters
from orchestra.domain.pipeline_templates import MissingValue, render
from orchestra.errors import Conflict, InvalidInput, NotFound, OrchestraError
from orchestra.services.events import Events
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.services.parameter_secrets import open_value, seal_run_values
from orchestra.services.pipelines import pipeline_of
from orchestra.services.runs import RunService
from orchestra.storage import pipeline_runs as store
from orchestra.storage import records
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database
from orchestra.storage.schema import project as project_table

log = logging.getLogger(__name__)
MAX_COMMENT = 10_000
ADVANCE_BATCH = 20  # marked pipeline runs advanced in one transaction at most
Prepared = tuple[dict[str, Any], list[dict[str, Any]]]  # a run's columns and its steps


def topic(identifier: str) -> str:
    """The signal published when a pipeline run changes (its page follows it)."""
    return f"pipeline-run:{identifier}"


class PipelineRunService:
    def __init__(
        self, db: Database, clock: Clock, events: Events, runs: RunService, keyring: Keyring
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs
        self.keyring = keyring

    # Trigger.

    async def trigger(
        self, project: str, pipeline: str, parameters: object, source: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create a pipeline run of `pipeline` and start what can start; 409 if the pipeline
        is disabled."""
        async with self.db.transaction() as conn:
            identifier, started = await self.trigger_in(conn, project, pipeline, parameters, source)
            shown = await self._shown(conn, project, identifier)
        self._started(identifier, started)
        return shown

    async def trigger_in(
        self,
        conn: AsyncConnection,
        project: str,
        pipeline: str,
        parameters: object,
        source: Mapping[str, Any],
    ) -> tuple[str, int]:
        """In the caller's transaction: the new pipeline run's identifier and how many runs
        it started (signal the dispatcher after the commit when any)."""
        definition = await pipeline_of(conn, project, pipeline)
        if not definition.is_enabled:
            raise Conflict(f"pipeline {pipeline!r} is disabled")
        declared = parse_parameters(definition.parameters)
        values = resolve_parameters(declared, parameters)
        values = seal_run_values(self.keyring, declared, parameters, values)
        identifier = str(uuid.uuid4())
        await store.insert(
            conn,
            {
                "identifier": identifier,
                "project": project,
                "pipeline": pipeline,
                "parameters": values,
                "secret_parameters": [p.key for p in declared if p.secret] or None,
                "source": dict(source),
                "status": progress.RUNNING,
                "nodes": definition.nodes,
                "should_cancel": False,
                "start_date": self.clock.now(),
            },
            [str(n["identifier"]) for n in definition.nodes],
        )
        started = await self.advance_in(conn, identifier)
        return identifier, started

    # Advance.

    async def advance(self, identifier: str) -> int:
        """Advance one pipeline run in a transaction of its own; the runs it started."""
        async with self.db.transaction() as conn:
            started = await self.advance_in(conn, identifier)
        self._started(identifier, started)
        return started

    async def advance_marked(self, min_age: float, *, peek: bool = True) -> int:
        """Advance the pipeline runs marked at least `min_age` seconds ago (those another
        master holds are skipped); how many were advanced. `peek`: look in a read transaction
        first (idle masters take no write lock, SQLite's); not when a mark is known to be
        there (this process's signal after its commit)."""
        before = self.clock.now() - timedelta(seconds=min_age)
        if peek:
            async with self.db.read() as conn:
                if not await store.marked(conn, before, 1, lock=False):
                    return 0
        async with self.db.transaction() as conn:
            identifiers = await store.marked(conn, before, ADVANCE_BATCH)
            started = {i: await self.advance_in(conn, i) for i in identifiers}
        for identifier, count in started.items():
            self._started(identifier, count)
        return len(identifiers)

    async def advance_in(self, conn: AsyncConnection, identifier: str) -> int:
        """Advance a pipeline run in the caller's transaction (its row locked until the end);
        clears its mark. The number of runs started."""
        row = await store.get(conn, identifier, lock=True)
        if row is None:
            return 0
        nodes = {n["node"]: dict(n) for n in (await store.nodes_of(conn, [identifier]))[identifier]}
        latest = await store.latest_runs(conn, identifier)
        changed = {
            name: (str(run["status"]), str(run["identifier"]))
            for name, run in latest.items()
            if name in nodes
            and (nodes[name]["status"], nodes[name]["run"]) != (run["status"], run["identifier"])
        }
        await store.sync_nodes(conn, identifier, changed)
        for name, (node_status, run_id) in changed.items():
            nodes[name].update(status=node_status, run=run_id)
        started = 0
        status = None
        if row["status"] == progress.RUNNING:
            results = {name: dict(run["results"] or {}) for name, run in latest.items()}
            started, status = await self._decide_and_write(conn, row, nodes, results)
        changes: dict[str, Any] = {"advance_date": None}
        if status is not None:
            changes.update(status=status, completion_date=self.clock.now())
            log.info("pipeline run %s ended %s", identifier, status)
        # A pipeline run neither marked nor changed (a trigger that starts nothing yet, a
        # decision's advance with nothing to do) is left as it is: no statement.
        if row["advance_date"] is not None or status is not None or started or changed:
            await store.update(conn, identifier, changes)
        return started

    async def _decide_and_write(
        self,
        conn: AsyncConnection,
        row: Row,
        nodes: dict[str, dict[str, Any]],
        results: dict[str, dict[str, str]],
    ) -> tuple[int, str | None]:
        identifier = row["identifier"]
        parameters = self._opened(row)

        def render_node(
            templates: Mapping[str, str], so_far: Mapping[str, Mapping[str, str]]
        ) -> dict[str, str]:
            try:
                return {k: render(t, parameters, so_far) for k, t in templates.items()}
            except MissingValue as missing:
                raise progress.CannotRender(str(missing)) from None

        definitions = {str(n["identifier"]): n for n in row["nodes"]}
        started = 0
        # A node whose run cannot be created (its job gone, parameters the job refuses) ends
        # `exception`, which may let others go on: decided again until nothing changes.
        for _ in range(len(definitions) + 1):
            states = {
                name: progress.NodeState(n["status"], n["run"] is not None)
                for name, n in nodes.items()
            }
            decided = progress.decide(
                row["nodes"], states, results, render_node, cancelled=row["should_cancel"]
            )
            for name, reason in decided.exceptions.items():
                await self._end_node(conn, identifier, nodes, name, progress.EXCEPTION, reason)
            for name in decided.skip:
                await self._end_node(conn, identifier, nodes, name, progress.SKIPPED, None)
            for name in decided.wait:
                if await store.set_node(
                    conn,
                    identifier,
                    name,
                    {"status": progress.WAITING},
                    only_from=[progress.PENDING],
                    unstarted=True,
                ):
                    nodes[name]["status"] = progress.WAITING
            refused = False
            prepared: dict[str, Prepared] = {}
            same: dict[tuple[str, tuple[tuple[str, str], ...]], Prepared] = {}
            for name, values in decided.start.items():
                try:
                    prepared[name] = await self._prepare(conn, row, definitions[name], values, same)
                except OrchestraError as error:
                    await self._end_node(
                        conn, identifier, nodes, name, progress.EXCEPTION, error.message
                    )
                    refused = True
            started += await self._start(conn, identifier, prepared, nodes)
            if not refused:
                return started, decided.status
        return started, None

    async def _prepare(
        self,
        conn: AsyncConnection,
        row: Row,
        node: Mapping[str, Any],
        parameters: dict[str, str],
        same: dict[tuple[str, tuple[tuple[str, str], ...]], Prepared],
    ) -> Prepared:
        """The run a job node would start (raises OrchestraError when the job refuses it: the
        node ends `exception`). Nodes of one job with the same parameters (a fan-out) share
        what `same` keeps of the first one's, each with its own identifier and source."""
        name = str(node["identifier"])
        source = {
            "type": "pipeline",
            "pipeline_run": row["identifier"],
            "node": name,
            "pipeline": row["pipeline"],
        }
        key = (str(node["job"]), tuple(sorted(parameters.items())))
        if key in same:
            values, steps = same[key]
            values = {**values, "identifier": str(uuid.uuid4()), "source": source}
        else:
            values, steps = await self.runs.pending_run(
                conn, row["project"], key[0], parameters, source
            )
            same[key] = (values, steps)
        return {**values, "pipeline_run": row["identifier"], "pipeline_node": name}, steps

    async def _start(
        self,
        conn: AsyncConnection,
        identifier: str,
        prepared: Mapping[str, Prepared],
        nodes: dict[str, dict[str, Any]],
    ) -> int:
        """Start these job nodes: each gets its run only if this transaction is the one that
        moves it from pending with no run (one statement for all of them), and only the runs
        of the nodes it moved are inserted (one statement, or two, for all). How many."""
        runs = {name: str(values["identifier"]) for name, (values, _) in prepared.items()}
        won = await store.start_nodes(conn, identifier, runs)
        await run_storage.insert_runs(conn, [prepared[name] for name in runs if name in won])
        for name in won:
            nodes[name].update(status=progress.PENDING, run=runs[name])
        return len(won)

    async def _end_node(
        self,
        conn: AsyncConnection,
        identifier: str,
        nodes: dict[str, dict[str, Any]],
        name: str,
        status: str,
        reason: str | None,
    ) -> None:
        if await store.set_node(
            conn,
            identifier,
            name,
            {"status": status, "reason": reason},
            only_from=store.NOT_STARTED,
            unstarted=True,
        ):
            nodes[name].update(status=status, reason=reason)

    def _opened(self, row: Row) -> dict[str, str]:
        """The pipeline run's parameters with secret values decrypted, for its nodes."""
        values = dict(row["parameters"] or {})
        for key in row["secret_parameters"] or ():
            if key in values:
                try:
                    values[key] = open_value(self.keyring, values[key])
                except KeyringError:
                    log.warning("pipeline run %s: parameter %s unreadable", row["identifier"], key)
        return values

    def _started(self, identifier: str, started: int) -> None:
        if started:
            self.events.publish("dispatch")
        self.events.publish(topic(identifier))

    # Approvals and cancel.

    async def decide(
        self,
        project: str,
        identifier: str,
        node: str,
        *,
        approve: bool,
        user: str,
        comment: object = None,
    ) -> dict[str, Any]:
        """Approve (the node succeeds) or reject (it fails) a waiting approval, then advance."""
        check_identifier(node, "node")
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
            raise InvalidInput(f"comment must be a string of at most {MAX_COMMENT} characters")
        async with self.db.transaction() as conn:
            row = await self._row(conn, project, identifier, lock=True)
            if node not in {str(n["identifier"]) for n in row["nodes"]}:
                raise NotFound(f"no node {node!r} in pipeline run {identifier!r}")
            decided = await store.set_node(
                conn,
                identifier,
                node,
                {
                    "status": progress.SUCCEEDED if approve else progress.FAILED,
                    "decided_by": user,
                    "comment": comment,
                    "decision_date": self.clock.now(),
                },
                only_from=[progress.WAITING],
            )
            if not decided:
                raise Conflict(f"node {node!r} is not waiting for a decision")
            started = await self.advance_in(conn, identifier)
            shown = await self._shown(conn, project, identifier)
        self._started(identifier, started)
        return shown

    async def cancel(self, project: str, identifier: str) -> dict[str, Any]:
        """Cancel a running pipeline run: it ends `cancelled` at once, what has not started is
        skipped, its pending runs are cancelled and its running ones aborted."""
        async with self.db.transaction() as conn:
            row = await self._row(conn, project, identifier, lock=True)
            if row["status"] != progress.RUNNING:
                raise Conflict(f"the pipeline run is already {row['status']}")
            await store.update(
                conn,
                identifier,
                {
                    "should_cancel": True,
                    "status": progress.CANCELLED,
                    "completion_date": self.clock.now(),
                    "advance_date": None,
                },
            )
            for node in (await store.nodes_of(conn, [identifier]))[identifier]:
                await store.set_node(
                    conn,
                    identifier,
                    node["node"],
                    {"status": progress.SKIPPED},
                    only_from=store.NOT_STARTED,
                    unstarted=True,
                )
            active = await store.active_runs(conn, identifier)
        # Each run in a transaction of its own, after the pipeline run's: a run's end locks
        # the run, then marks its pipeline run; never the other way round.
        for run in active:
            await self._stop(project, run["identifier"])
        await self.advance(identifier)
        return await self.get(project, identifier)

    async def _stop(self, project: str, run: str) -> None:
        for stop in (self.runs.cancel, self.runs.abort):
            try:
                await stop(project, run)
                return
            except (Conflict, NotFound):
                continue  # claimed meanwhile (abort it then), or ended already

    # Reading.

    async def get(self, project: str, identifier: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await self._shown(conn, project, identifier)

    async def list_runs(
        self,
        project: str,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Listing[dict[str, Any]]:
        if status is not None and status not in progress.PIPELINE_RUN_STATUSES:
            raise InvalidInput(f"unknown status {status!r}")
        if pipeline is not None:
            check_identifier(pipeline, "pipeline")
        async with self.db.read() as conn:
            filters = {"project": project, "pipeline": pipeline, "status": status}
            found = await store.page(conn, filters, cursor, limit)
            rows = found.items
            if not rows:
                await pipeline_project(conn, project)
            nodes = await store.nodes_of(conn, [r["identifier"] for r in rows])
            latest = {r["identifier"]: await store.latest_runs(conn, r["identifier"]) for r in rows}
        return found.map(lambda r: shown(r, nodes[r["identifier"]], latest[r["identifier"]]))

    async def _row(
        self, conn: AsyncConnection, project: str, identifier: str, *, lock: bool = False
    ) -> Row:
        row = None
        try:
            uuid.UUID(identifier)
        except ValueError:
            pass
        else:
            row = await store.get(conn, identifier, project, lock=lock)
        if row is None:
            await pipeline_project(conn, project)
            raise NotFound(f"no pipeline run {identifier!r} in project {project!r}")
        return row

    async def _shown(self, conn: AsyncConnection, project: str, identifier: str) -> dict[str, Any]:
        row = await self._row(conn, project, identifier)
        nodes = (await store.nodes_of(conn, [identifier]))[identifier]
        return shown(row, nodes, await store.latest_runs(conn, identifier))


async def pipeline_project(conn: AsyncConnection, project: str) -> None:
    if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
        raise NotFound(f"no project {project!r}")


def shown(row: Row, node_rows: list[Row], runs: Mapping[str, Row]) -> dict[str, Any]:
    """A pipeline run as the API shows it: secret parameter values masked, its nodes in the
    order of its definition with their state (a job node's, its latest run's status now)."""
    secret = set(row["secret_parameters"] or ())
    states: dict[str, Mapping[str, Any]] = {n["node"]: n for n in node_rows}
    for name, run in runs.items():
        if name in states:
            states[name] = {**states[name], "status": run["status"], "run": run["identifier"]}
    nodes = []
    for node in row["nodes"]:
        name = str(node["identifier"])
        state = states.get(name) or {}
        item: dict[str, Any] = {"identifier": name}
        if node.get("job") is not None:
            item["job"] = node["job"]
        else:
            item["approval"] = node.get("approval") or {}
        item.update(
            needs=list(node.get("needs") or []),
            when=node.get("when") or "success",
            status=state.get("status", progress.PENDING),
            run=state.get("run"),
            reason=state.get("reason"),
            decided_by=state.get("decided_by"),
            comment=state.get("comment"),
            decision_date=state.get("decision_date"),
        )
        nodes.append(item)
    return {
        "identifier": row["identifier"],
        "project": row["project"],
        "pipeline": row["pipeline"],
        "parameters": {k: ("***" if k in secret else v) for k, v in row["parameters"].items()},
        "source": row["source"],
        "status": row["status"],
        "nodes": nodes,
        "creation_date": row["creation_date"],
        "start_date": row["start_date"],
        "completion_date": row["completion_date"],
        "update_date": row["update_date"],
    }
