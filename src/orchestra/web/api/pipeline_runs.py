"""Pipeline runs: trigger a pipeline, list and show its runs, cancel one, approve or reject an
approval node (docs/pipelines.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from orchestra.web.api.schemas import Body, Out, Page, Scalar
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["pipeline runs"])


class PipelineTriggerIn(Body):
    parameters: dict[str, Scalar] = Field(default_factory=dict)


class DecisionIn(Body):
    comment: str | None = Field(default=None, max_length=10_000)


class PipelineNodeOut(Out):
    identifier: str
    job: str | None = None
    approval: dict[str, Any] | None = None
    needs: list[str]
    when: str
    status: str = Field(
        description="pending, waiting, skipped, then its run's status, or an approval's "
        "decision (succeeded approved, failed rejected)"
    )
    run: str | None = Field(default=None, description="its run (the latest attempt)")
    reason: str | None = None
    decided_by: str | None = None
    comment: str | None = None
    decision_date: datetime | None = None


class PipelineRunOut(Out):
    identifier: str
    project: str
    pipeline: str
    parameters: dict[str, str]
    source: dict[str, Any]
    status: str = Field(description="running, then succeeded, failed or cancelled")
    nodes: list[PipelineNodeOut]
    creation_date: datetime
    start_date: datetime | None = None
    completion_date: datetime | None = None
    update_date: datetime


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(
        pydantic_core.to_json(content), status_code=status_code, media_type="application/json"
    )


@router.post(
    "/projects/{project}/pipelines/{pipeline}/trigger",
    response_model=PipelineRunOut,
    status_code=201,
)
async def trigger(
    project: str,
    pipeline: str,
    caller: CallerDep,
    services: ServicesDep,
    body: PipelineTriggerIn | None = None,
) -> Response:
    source = {"type": "api", "user": caller.user.identifier}
    body = body or PipelineTriggerIn()
    shown = await services.pipeline_runs.trigger(project, pipeline, body.parameters, source)
    return _json(shown, 201)


@router.get("/projects/{project}/pipeline-runs", response_model=Page[PipelineRunOut])
async def list_pipeline_runs(
    project: str,
    services: ServicesDep,
    pipeline: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Response:
    items, _ = found = await services.pipeline_runs.list_runs(
        project, pipeline=pipeline, status=status, cursor=cursor, limit=limit
    )
    return _json({"items": items, **found.cursors()})


@router.get("/projects/{project}/pipeline-runs/{run}", response_model=PipelineRunOut)
async def get_pipeline_run(project: str, run: str, services: ServicesDep) -> Response:
    return _json(await services.pipeline_runs.get(project, run))


@router.post("/projects/{project}/pipeline-runs/{run}/cancel", response_model=PipelineRunOut)
async def cancel(project: str, run: str, services: ServicesDep) -> Response:
    return _json(await services.pipeline_runs.cancel(project, run))


@router.post(
    "/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve", response_model=PipelineRunOut
)
async def approve(
    project: str,
    run: str,
    node: str,
    caller: CallerDep,
    services: ServicesDep,
    body: DecisionIn | None = None,
) -> Response:
    comment = body.comment if body is not None else None
    shown = await services.pipeline_runs.decide(
        project, run, node, approve=True, user=caller.user.identifier, comment=comment
    )
    return _json(shown)


@router.post(
    "/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject", response_model=PipelineRunOut
)
async def reject(
    project: str,
    run: str,
    node: str,
    caller: CallerDep,
    services: ServicesDep,
    body: DecisionIn | None = None,
) -> Response:
    comment = body.comment if body is not None else None
    shown = await services.pipeline_runs.decide(
        project, run, node, approve=False, user=caller.user.identifier, comment=comment
    )
    return _json(shown)
