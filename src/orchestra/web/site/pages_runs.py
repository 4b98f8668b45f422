"""Website pages for projects, jobs, schedules and runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchestra import metrics
from orchestra.domain.models import Run
from orchestra.domain.permissions import Action, allowed
from orchestra.domain.schedules import preview
from orchestra.domain.statuses import RunStatus
from orchestra.errors import Conflict, InvalidInput, NotFound, OrchestraError
from orchestra.services import reruns, run_trends
from orchestra.services.container import Services
from orchestra.web.follow import while_allowed
from orchestra.web.site import logview, pages_artifacts
from orchestra.web.site.charts import job_chart, project_chart
from orchestra.web.site.forms import back, form_of
from orchestra.web.site.render import duration, render
from orchestra.web.site.render import format_date as _date

router = APIRouter()
STATUSES = [s.value for s in RunStatus]
Cursor = Annotated[str | None, Query(max_length=1000)]
Filter = Annotated[str | None, Query(max_length=100)]


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/")
async def home(request: Request) -> Response:
    services = services_of(request)
    roles = request.state.caller.user.roles
    access = request.state.caller.access
    readable = access.readable_projects()
    context: dict[str, Any] = {"recent": [], "running": [], "workers": []}
    context["show_runs"] = access.may(Action.RUN_READ) or bool(readable)
    if access.may(Action.RUN_READ):
        context["running"], _ = await services.runs.list_runs(None, status="running", limit=20)
        context["recent"], _ = await services.runs.list_runs(None, limit=20)
    elif readable:  # a member: the runs of their projects only
        context["running"] = await _runs_in(services, readable, "running")
        context["recent"] = await _runs_in(services, readable, None)
    if allowed(roles, Action.WORKER_READ):
        context["workers"], _ = await services.workers.list_workers(None, 50)
    return render(request, "home.html", **context)


async def _runs_in(services: Services, projects: frozenset[str], status: str | None) -> list[Run]:
    """The 20 newest runs (of this status) of these projects (the first 50 of them)."""
    runs: list[Run] = []
    for project in sorted(projects)[:50]:
        try:
            found, _ = await services.runs.list_runs(project, status=status, limit=20)
        except NotFound:  # deleted since
            continue
        runs.extend(found)
    return sorted(runs, key=lambda r: r.creation_date, reverse=True)[:20]


@router.get("/projects")
async def projects(request: Request, cursor: Cursor = None) -> Response:
    readable = request.state.caller.access.readable_projects()
    items, _ = pages = await services_of(request).projects.list_projects(cursor, 50, readable)
    return render(request, "projects.html", projects=items, pages=pages)


@router.get("/projects/{project}")
async def project_page(request: Request, project: str) -> Response:
    services = services_of(request)
    found = await services.projects.get_project(project)
    jobs, _ = await services.projects.list_jobs(project, None, 500)
    schedules, _ = await services.projects.list_schedules(project, None, 500)
    pipelines, _ = await services.pipelines.list_pipelines(project, None, 500)
    grid = await services.runs.latest_per_job(project, [j.identifier for j in jobs], 12)
    secrets, _ = await services.secrets.list_secrets(project, None, 500)
    members, _ = await services.members.list_members(project, None, 500)
    trend = project_chart(await run_trends.project_days(services.db, project, datetime.now(UTC)))
    return render(
        request,
        "project.html",
        project=found,
        jobs=jobs,
        schedules=schedules,
        pipelines=pipelines,
        grid=grid,
        secrets=secrets,
        members=members,
        member_roles=["viewer", "operator"],
        trend=trend,
        artifacts_size=pages_artifacts.file_size(
            (await services.artifacts.project_sizes([project]))[project]
        ),
    )


@router.post("/projects/{project}/state")
async def project_state(request: Request, project: str) -> Response:
    form = await form_of(request)
    enabled = form.get("is_enabled") == "true"
    await services_of(request).projects.patch_project(project, {"is_enabled": enabled})
    return back(f"/projects/{project}", f"Project {'enabled' if enabled else 'disabled'}.")


@router.get("/projects/{project}/jobs/{job}")
async def job_page(
    request: Request, project: str, job: str, cursor: Cursor = None, status: Filter = None
) -> Response:
    services = services_of(request)
    found = await services.projects.get_job(project, job)
    runs, _ = pages = await services.runs.list_runs(
        project, job=job, status=status or None, cursor=cursor, limit=25
    )
    bars = await run_trends.job_bars(services.db, project, job, datetime.now(UTC))
    return render(
        request,
        "job.html",
        job=found,
        runs=runs,
        pages=pages,
        trend=job_chart(project, bars, run_trends.JOB_RUNS),
        status=status,
        statuses=STATUSES,
    )


@router.post("/projects/{project}/jobs/{job}/state")
async def job_state(request: Request, project: str, job: str) -> Response:
    form = await form_of(request)
    enabled = form.get("is_enabled") == "true"
    await services_of(request).projects.patch_job(project, job, {"is_enabled": enabled})
    return back(f"/projects/{project}/jobs/{job}", f"Job {'enabled' if enabled else 'disabled'}.")


@router.post("/projects/{project}/jobs/{job}/trigger")
async def trigger(request: Request, project: str, job: str) -> Response:
    services = services_of(request)
    form = await form_of(request)
    parameters = {
        key[len("parameter.") :]: value
        for key, value in form.items()
        if key.startswith("parameter.") and isinstance(value, str)
    }
    # Secret parameters' fields are empty unless typed in: empty, the default (never shown) holds.
    for key, value in form.items():
        if key.startswith("secret.") and isinstance(value, str) and value:
            parameters[key[len("secret.") :]] = value
    source = {"type": "website", "user": request.state.caller.user.identifier}
    try:
        run = await services.runs.trigger(project, job, parameters, source)
    except InvalidInput as exc:
        return back(f"/projects/{project}/jobs/{job}", error=str(exc))
    return back(f"/projects/{project}/runs/{run.identifier}", "Run triggered.")


@router.get("/projects/{project}/runs")
async def runs_page(
    request: Request,
    project: str,
    cursor: Cursor = None,
    status: Filter = None,
    job: Filter = None,
    worker: Filter = None,
) -> Response:
    services = services_of(request)
    found = await services.projects.get_project(project)
    runs, _ = pages = await services.runs.list_runs(
        project,
        job=job or None,
        status=status or None,
        worker=worker or None,
        cursor=cursor,
        limit=50,
    )
    jobs, _ = await services.projects.list_jobs(project, None, 500)
    return render(
        request,
        "runs.html",
        project=found,
        runs=runs,
        jobs=jobs,
        pages=pages,
        filters={"status": status or "", "job": job or "", "worker": worker or ""},
        statuses=STATUSES,
    )


@router.get("/projects/{project}/runs/{run}")
async def run_page(
    request: Request,
    project: str,
    run: str,
    search: Annotated[str | None, Query(max_length=200)] = None,
    times: bool = False,
) -> Response:
    services = services_of(request)
    found = await services.runs.get_run(project, run)
    # The log drawn by web/site/logview.py: lines numbered and linked, colours, times, search.
    log = await logview.page_log(services, found, search or None)
    artifacts = await pages_artifacts.shown_artifacts(services, found)
    return render(
        request,
        "run.html",
        run=found,
        log=log,
        search=search or "",
        times=times,
        artifacts=artifacts,
    )


@router.get("/projects/{project}/runs/{run}/log")
async def run_log(
    request: Request,
    project: str,
    run: str,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    step: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    follow: bool = False,
    download: bool = False,
) -> Response:
    services = services_of(request)
    if follow:
        chunks = while_allowed(
            request, await services.runs.follow_log(project, run, offset, step), allow_cookie=True
        )
    else:
        chunks = await services.runs.read_log(project, run, offset, step)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{project}-{run}.log"'
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8", headers=headers)


@router.get("/projects/{project}/runs/{run}/state")
async def run_state(request: Request, project: str, run: str) -> Response:
    found = await services_of(request).runs.get_run(project, run)
    return JSONResponse(
        {
            "status": found.status.value,
            "final": found.status.is_final,
            "reason": found.reason,
            "waiting_reason": found.waiting_reason,
            "worker": found.worker,
            "started": _date(found.start_date),
            "started_utc": found.start_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if found.start_date
            else None,
            "duration": duration(found.start_date, found.completion_date),
            "steps": [
                {
                    "index": s.index,
                    "status": s.status.value,
                    "exit_code": s.exit_code,
                    "duration": duration(s.start_date, s.completion_date) if s.start_date else "",
                }
                for s in found.steps
            ],
        }
    )


@router.post("/projects/{project}/runs/{run}/cancel")
async def cancel(request: Request, project: str, run: str) -> Response:
    return await _control(request, project, run, "cancel")


@router.post("/projects/{project}/runs/{run}/abort")
async def abort(request: Request, project: str, run: str) -> Response:
    return await _control(request, project, run, "abort")


@router.post("/projects/{project}/runs/{run}/rerun")
async def rerun(request: Request, project: str, run: str) -> Response:
    """A new run of a final run's job with the same parameters."""
    try:
        new = await reruns.rerun(services_of(request).runs, project, run)
    except Conflict as exc:
        return back(f"/projects/{project}/runs/{run}", error=str(exc))
    return back(f"/projects/{project}/runs/{new.identifier}", "Run triggered again.")


async def _control(request: Request, project: str, run: str, action: str) -> Response:
    services = services_of(request)
    target = f"/projects/{project}/runs/{run}"
    try:
        if action == "cancel":
            cancelled = await services.runs.cancel(project, run)
            metrics.run_ended(project, cancelled.job, cancelled.status.value, None, None)
        else:
            await services.runs.abort(project, run)
    except OrchestraError as exc:
        if exc.status_code != 409:
            raise
        return back(target, error=str(exc))
    return back(target, "Run cancelled." if action == "cancel" else "Abort requested.")


@router.get("/projects/{project}/schedules/{schedule}")
async def schedule_page(request: Request, project: str, schedule: str) -> Response:
    found = await services_of(request).projects.get_schedule(project, schedule)
    description, upcoming = preview(
        project, schedule, found.expression, found.time_zone, datetime.now(UTC), 10
    )
    return render(
        request,
        "schedule.html",
        schedule=found,
        description=description,
        upcoming=upcoming if found.is_enabled else [],
        parameters=json.dumps(found.parameters, ensure_ascii=False),
    )


@router.post("/projects/{project}/schedules/{schedule}/state")
async def schedule_state(request: Request, project: str, schedule: str) -> Response:
    form = await form_of(request)
    enabled = form.get("is_enabled") == "true"
    await services_of(request).projects.patch_schedule(project, schedule, {"is_enabled": enabled})
    message = f"Schedule {'enabled' if enabled else 'disabled'}."
    return back(f"/projects/{project}/schedules/{schedule}", message)
