"""The website's pipeline page: its description, parameters, nodes and graph, and a trigger
form (served by the pipeline runs' pages) for those who may trigger."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestra.services.container import Services
from orchestra.web.site.pipeline_graph import pipeline_svg
from orchestra.web.site.render import render

router = APIRouter()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/projects/{project}/pipelines/{pipeline}")
async def pipeline_page(request: Request, project: str, pipeline: str) -> Response:
    found = await _services(request).pipelines.get_pipeline(project, pipeline)
    return render(request, "pipeline.html", pipeline=found, graph=pipeline_svg(found.nodes))
