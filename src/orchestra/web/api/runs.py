"""Trigger runs, list and show them, cancel and abort them, read and follow their logs."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from orchestra import metrics
from orchestra.domain.models import Run, RunStep
from orchestra.services import reruns
from orchestra.services.run_logs import RunLogs
from orchestra.web.api.schemas import ForceIn, Page, RunOut, TriggerIn
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.follow import while_allowed
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["runs"])
Offset = Annotated[int, Query(ge=0, le=2**62, description="start from this byte")]
Follow = Annotated[bool, Query(description="stream until the run completes")]
Timestamps = Annotated[
    bool,
    Query(
        description="put each line's time (ISO 8601, UTC, to the millisecond: when the worker "
        "read it from the step) and a space before it; without it the log is the bytes as "
        "written"
    ),
]
Search = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="only the lines holding this text (ignoring case and terminal escape "
        "sequences), as NUMBER:TEXT lines like `grep -n`; `offset`, `follow` and "
        "`timestamps` do not apply",
    ),
]
LOG_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the log"}
}


def run_fields(run: Run) -> dict[str, Any]:
    """A run as the API shows it (secret parameter values masked), as plain values in
    RunOut's field order: encoded with pydantic_core.to_json they make the same bytes as
    RunOut, without building a model per run (which cost most of a page's time, and a
    trigger's). tests/unit/test_run_json.py holds them equal."""
    return {
        "project": run.project,
        "identifier": run.identifier,
        "job": run.job,
        "parameters": run.shown_parameters() if run.secret_parameters else run.parameters,
        "source": run.source,
        "worker": run.worker,
        "status": run.status.value,
        "steps": [_step_fields(s) for s in run.steps],
        "workspace": run.workspace,
        "start_date": run.start_date,
        "completion_date": run.completion_date,
        "should_cancel": run.should_cancel,
        "should_abort": run.should_abort,
        "reason": run.reason,
        "waiting_reason": run.waiting_reason,
        "late_report": run.late_report,
        "warning": run.warning,
        "priority": run.priority,
        "attempt": run.attempt,
        "retry_of": run.retry_of,
        "retried_by": run.retried_by,
        "timeout": None if run.timeout is None else float(run.timeout),
        "expiry_date": run.expiry_date,
        "not_before": run.not_before,
        "forced_by": run.forced_by,
        "sandbox": run.sandbox,
        "limits": run.limits,
        "results": run.results if isinstance(run.results, dict) else {},
        "pipeline_run": run.pipeline_run,
        "pipeline_node": run.pipeline_node,
        "artifacts": run.artifacts,
        "tests": run.tests,
        "creation_date": run.creation_date,
        "update_date": run.update_date,
    }


def _step_fields(step: RunStep) -> dict[str, Any]:
    return {
        "index": step.index,
        "name": step.name,
        "command": step.command,
        "status": step.status.value,
        "exit_code": step.exit_code,
        "start_date": step.start_date,
        "completion_date": step.completion_date,
        "timeout": None if step.timeout is None else float(step.timeout),
    }


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(
        pydantic_core.to_json(content), status_code=status_code, media_type="application/json"
    )


@router.post("/projects/{project}/jobs/{job}/trigger", response_model=RunOut, status_code=201)
async def trigger(
    project: str, job: str, caller: CallerDep, services: ServicesDep, body: TriggerIn | None = None
) -> Response:
    source = {"type": "api", "user": caller.user.identifier}
    body = body or TriggerIn()
    run = await services.runs.trigger(project, job, body.parameters, source, body.priority)
    return _json(run_fields(run), 201)


@router.get("/projects/{project}/runs", response_model=Page[RunOut])
async def list_runs(
    project: str,
    services: ServicesDep,
    job: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    worker: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Response:
    runs, _ = found = await services.runs.list_runs(
        project, job=job, status=status, worker=worker, cursor=cursor, limit=limit
    )
    return _json({"items": [run_fields(r) for r in runs], **found.cursors()})


@router.get("/projects/{project}/runs/{run}", response_model=RunOut)
async def get_run(project: str, run: str, services: ServicesDep) -> Response:
    return _json(run_fields(await services.runs.get_run(project, run)))


@router.post("/projects/{project}/runs/{run}/cancel", response_model=RunOut)
async def cancel(project: str, run: str, services: ServicesDep) -> Response:
    cancelled = await services.runs.cancel(project, run)
    metrics.run_ended(project, cancelled.job, cancelled.status.value, None, None)
    return _json(run_fields(cancelled))


@router.post("/projects/{project}/runs/{run}/abort", response_model=RunOut)
async def abort(project: str, run: str, services: ServicesDep) -> Response:
    return _json(run_fields(await services.runs.abort(project, run)))


@router.post("/projects/{project}/runs/{run}/force", response_model=RunOut)
async def force(
    project: str, run: str, body: ForceIn, caller: CallerDep, services: ServicesDep
) -> Response:
    forced = await services.runs.force(
        project, run, body.status, body.reason, caller.user.identifier
    )
    ended = forced.completion_date
    metrics.run_ended(project, forced.job, forced.status.value, forced.start_date, ended)
    return _json(run_fields(forced))


@router.post("/projects/{project}/runs/{run}/rerun", response_model=RunOut, status_code=201)
async def rerun(project: str, run: str, services: ServicesDep) -> Response:
    """A new run of a final run's job with the same parameters (secret ones included)."""
    return _json(run_fields(await reruns.rerun(services.runs, project, run)), 201)


@router.get(
    "/projects/{project}/runs/{run}/log", response_class=StreamingResponse, responses=LOG_RESPONSES
)
async def run_log(
    project: str,
    run: str,
    request: Request,
    services: ServicesDep,
    offset: Offset = 0,
    follow: Follow = False,
    timestamps: Timestamps = False,
    search: Search = None,
) -> StreamingResponse:
    """The run's log as `text/plain`: its steps' output, one after the other, as written."""
    if search is not None or timestamps:
        return await _log_view(request, services, project, run, None, offset, follow, search)
    if follow:
        return _text(while_allowed(request, await services.runs.follow_log(project, run, offset)))
    return _text(await services.runs.read_log(project, run, offset))


@router.get(
    "/projects/{project}/runs/{run}/steps/{index}/log",
    response_class=StreamingResponse,
    responses=LOG_RESPONSES,
)
async def step_log(
    project: str,
    run: str,
    index: Annotated[int, Path(ge=0, le=10_000)],
    request: Request,
    services: ServicesDep,
    offset: Offset = 0,
    follow: Follow = False,
    timestamps: Timestamps = False,
    search: Search = None,
) -> StreamingResponse:
    """One step's output as `text/plain` (`offset` counts from the step's first byte)."""
    if search is not None or timestamps:
        return await _log_view(request, services, project, run, index, offset, follow, search)
    if follow:
        chunks = await services.runs.follow_log(project, run, offset, index)
        return _text(while_allowed(request, chunks))
    return _text(await services.runs.read_log(project, run, offset, index))


async def _log_view(
    request: Request,
    services: ServicesDep,
    project: str,
    run: str,
    step: int | None,
    offset: int,
    follow: bool,
    search: str | None,
) -> StreamingResponse:
    logs = RunLogs(services.runs)
    if search is not None:
        return _text(await logs.search(project, run, search, step))
    chunks = await logs.timestamped(project, run, offset, step, follow=follow)
    return _text(while_allowed(request, chunks) if follow else chunks)


def _text(chunks: object) -> StreamingResponse:
    return StreamingResponse(
        chunks,  # type: ignore[arg-type]
        media_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )
