"""The website's pipeline runs: trigger a pipeline (the pipeline page's form), the list of a
project's pipeline runs, and a pipeline run's page with its graph coloured by status, kept
current by polling a fragment (`/live`), its nodes' runs linked, and Approve, Reject and Cancel
for those who may."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from orchestra.domain.pipeline_progress import PIPELINE_RUN_STATUSES
from orchestra.errors import OrchestraError
from orchestra.services.container import Services
from orchestra.web.site.forms import back, form_of
from orchestra.web.site.pipeline_graph import pipeline_svg
from orchestra.web.site.render import render

router = APIRouter()
Cursor = Annotated[str | None, Query(max_length=1000)]
Filter = Annotated[str | None, Query(max_length=100)]
MAX_COMMENT = 10_000


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _context(shown: dict[str, Any]) -> dict[str, Any]:
    statuses = {n["identifier"]: n["status"] for n in shown["nodes"]}
    final = shown["status"] != "running" and all(
        s not in ("pending", "running", "waiting") for s in statuses.values()
    )
    project = quote(shown["project"], safe="")
    links = {
        n["identifier"]: f"/projects/{project}/runs/{quote(n['run'], safe='')}"
        for n in shown["nodes"]
        if n.get("run")
    }
    graph = pipeline_svg(shown["nodes"], statuses, links=links)
    return {"pipeline_run": shown, "graph": graph, "final": final}


@router.post("/projects/{project}/pipelines/{pipeline}/trigger")
async def trigger(request: Request, project: str, pipeline: str) -> Response:
    form = await form_of(request)
    parameters = {
        key[len("parameter.") :]: value
        for key, value in form.items()
        if key.startswith("parameter.") and isinstance(value, str)
    }
    source = {"type": "website", "user": request.state.caller.user.identifier}
    try:
        shown = await _services(request).pipeline_runs.trigger(
            project, pipeline, parameters, source
        )
    except OrchestraError as exc:
        if exc.status_code not in (409, 422):
            raise
        return back(f"/projects/{project}/pipelines/{pipeline}", error=str(exc))
    return back(f"/projects/{project}/pipeline-runs/{shown['identifier']}", "Pipeline triggered.")


@router.get("/projects/{project}/pipeline-runs")
async def pipeline_runs_page(
    request: Request,
    project: str,
    cursor: Cursor = None,
    pipeline: Filter = None,
    status: Filter = None,
) -> Response:
    services = _services(request)
    found = await services.projects.get_project(project)
    items, _ = pages = await services.pipeline_runs.list_runs(
        project, pipeline=pipeline or None, status=status or None, cursor=cursor, limit=50
    )
    return render(
        request,
        "pipeline_runs.html",
        project=found,
        pipeline_runs=items,
        pages=pages,
        filters={"pipeline": pipeline or "", "status": status or ""},
        statuses=PIPELINE_RUN_STATUSES,
    )


@router.get("/projects/{project}/pipeline-runs/{run}")
async def pipeline_run_page(request: Request, project: str, run: str) -> Response:
    shown = await _services(request).pipeline_runs.get(project, run)
    return render(request, "pipeline_run.html", **_context(shown))


@router.get("/projects/{project}/pipeline-runs/{run}/live")
async def pipeline_run_live(request: Request, project: str, run: str) -> Response:
    """The part of the page that changes (status, graph, nodes), polled by the page."""
    shown = await _services(request).pipeline_runs.get(project, run)
    return render(request, "pipeline_run_live.html", **_context(shown))


@router.post("/projects/{project}/pipeline-runs/{run}/cancel")
async def cancel(request: Request, project: str, run: str) -> Response:
    target = f"/projects/{project}/pipeline-runs/{run}"
    try:
        await _services(request).pipeline_runs.cancel(project, run)
    except OrchestraError as exc:
        if exc.status_code != 409:
            raise
        return back(target, error=str(exc))
    return back(target, "Pipeline run cancelled.")


@router.post("/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve")
async def approve(request: Request, project: str, run: str, node: str) -> Response:
    return await _decide(request, project, run, node, approve=True)


@router.post("/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject")
async def reject(request: Request, project: str, run: str, node: str) -> Response:
    return await _decide(request, project, run, node, approve=False)


async def _decide(
    request: Request, project: str, run: str, node: str, *, approve: bool
) -> Response:
    target = f"/projects/{project}/pipeline-runs/{run}"
    form = await form_of(request)
    comment = form.get("comment")
    text = comment.strip()[:MAX_COMMENT] if isinstance(comment, str) and comment.strip() else None
    try:
        await _services(request).pipeline_runs.decide(
            project,
            run,
            node,
            approve=approve,
            user=request.state.caller.user.identifier,
            comment=text,
        )
    except OrchestraError as exc:
        if exc.status_code not in (409, 422):
            raise
        return back(target, error=str(exc))
    return back(target, "Approved." if approve else "Rejected.")
