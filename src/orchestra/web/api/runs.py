"""Trigger runs, list and show them, cancel and abort them, read and follow their logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from orchestra.domain.models import Run
from orchestra.web.api.schemas import ForceIn, Page, RunOut, TriggerIn
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["runs"])
Offset = Annotated[int, Query(ge=0, le=2**62, description="start from this byte")]
Follow = Annotated[bool, Query(description="stream until the run completes")]
LOG_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the log"}
}


def run_out(run: Run) -> RunOut:
    """A run as the API shows it: secret parameter values masked."""
    shown = RunOut.model_validate(run)
    return shown.model_copy(update={"parameters": run.shown_parameters()})


@router.post("/projects/{project}/jobs/{job}/trigger", response_model=RunOut, status_code=201)
async def trigger(
    project: str, job: str, caller: CallerDep, services: ServicesDep, body: TriggerIn | None = None
) -> RunOut:
    source = {"type": "api", "user": caller.user.identifier}
    body = body or TriggerIn()
    return run_out(
        await services.runs.trigger(project, job, body.parameters, source, body.priority)
    )


@router.get("/projects/{project}/runs", response_model=Page[RunOut])
async def list_runs(
    project: str,
    services: ServicesDep,
    job: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    worker: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[RunOut]:
    runs, next_cursor = await services.runs.list_runs(
        project, job=job, status=status, worker=worker, cursor=cursor, limit=limit
    )
    return Page(items=[run_out(r) for r in runs], next_cursor=next_cursor)


@router.get("/projects/{project}/runs/{run}", response_model=RunOut)
async def get_run(project: str, run: str, services: ServicesDep) -> RunOut:
    return run_out(await services.runs.get_run(project, run))


@router.post("/projects/{project}/runs/{run}/cancel", response_model=RunOut)
async def cancel(project: str, run: str, services: ServicesDep) -> RunOut:
    return run_out(await services.runs.cancel(project, run))


@router.post("/projects/{project}/runs/{run}/abort", response_model=RunOut)
async def abort(project: str, run: str, services: ServicesDep) -> RunOut:
    return run_out(await services.runs.abort(project, run))


@router.post("/projects/{project}/runs/{run}/force", response_model=RunOut)
async def force(
    project: str, run: str, body: ForceIn, caller: CallerDep, services: ServicesDep
) -> RunOut:
    forced = await services.runs.force(
        project, run, body.status, body.reason, caller.user.identifier
    )
    return run_out(forced)


@router.get(
    "/projects/{project}/runs/{run}/log", response_class=StreamingResponse, responses=LOG_RESPONSES
)
async def run_log(
    project: str, run: str, services: ServicesDep, offset: Offset = 0, follow: Follow = False
) -> StreamingResponse:
    read = services.runs.follow_log if follow else services.runs.read_log
    return _text(await read(project, run, offset))


@router.get(
    "/projects/{project}/runs/{run}/steps/{index}/log",
    response_class=StreamingResponse,
    responses=LOG_RESPONSES,
)
async def step_log(
    project: str,
    run: str,
    index: Annotated[int, Path(ge=0, le=10_000)],
    services: ServicesDep,
    offset: Offset = 0,
    follow: Follow = False,
) -> StreamingResponse:
    read = services.runs.follow_log if follow else services.runs.read_log
    return _text(await read(project, run, offset, index))


def _text(chunks: object) -> StreamingResponse:
    return StreamingResponse(
        chunks,  # type: ignore[arg-type]
        media_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )
