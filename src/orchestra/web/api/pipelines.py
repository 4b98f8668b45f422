"""/projects/{project}/pipelines: the pipelines' definitions (their runs: pipeline_runs.py)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from orchestra.web.api.pipeline_schemas import (
    PipelineIn,
    PipelineOut,
    PipelinePatch,
    PipelinePut,
)
from orchestra.web.api.schemas import Page
from orchestra.web.deps import Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["pipelines"])


@router.get("/projects/{project}/pipelines", response_model=Page[PipelineOut])
async def list_pipelines(
    project: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[PipelineOut]:
    items, _ = found = await services.pipelines.list_pipelines(project, cursor, limit)
    return Page(items=[PipelineOut.model_validate(p) for p in items], **found.cursors())


@router.post("/projects/{project}/pipelines", response_model=PipelineOut, status_code=201)
async def create_pipeline(project: str, body: PipelineIn, services: ServicesDep) -> PipelineOut:
    created = await services.pipelines.create_pipeline(project, body.changes())
    return PipelineOut.model_validate(created)


@router.get("/projects/{project}/pipelines/{pipeline}", response_model=PipelineOut)
async def get_pipeline(project: str, pipeline: str, services: ServicesDep) -> PipelineOut:
    return PipelineOut.model_validate(await services.pipelines.get_pipeline(project, pipeline))


@router.put("/projects/{project}/pipelines/{pipeline}", response_model=PipelineOut)
async def put_pipeline(
    project: str, pipeline: str, body: PipelinePut, services: ServicesDep, response: Response
) -> PipelineOut:
    result, created = await services.pipelines.put_pipeline(project, pipeline, body.changes())
    response.status_code = 201 if created else 200
    return PipelineOut.model_validate(result)


@router.patch("/projects/{project}/pipelines/{pipeline}", response_model=PipelineOut)
async def patch_pipeline(
    project: str, pipeline: str, body: PipelinePatch, services: ServicesDep
) -> PipelineOut:
    result = await services.pipelines.patch_pipeline(project, pipeline, body.changes())
    return PipelineOut.model_validate(result)


@router.delete("/projects/{project}/pipelines/{pipeline}", status_code=204)
async def delete_pipeline(project: str, pipeline: str, services: ServicesDep) -> Response:
    await services.pipelines.delete_pipeline(project, pipeline)
    return Response(status_code=204)
