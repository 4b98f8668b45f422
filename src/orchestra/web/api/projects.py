"""/projects, their jobs and schedules."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response

from orchestra.domain.models import Schedule
from orchestra.domain.schedules import preview
from orchestra.web.api.schemas import (
    JobIn,
    JobOut,
    JobPatch,
    JobPut,
    Page,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    SchedulePut,
)
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["projects"])


def schedule_out(schedule: Schedule) -> ScheduleOut:
    """A schedule with its description and next due times, as of now."""
    description, upcoming = preview(
        schedule.project,
        schedule.identifier,
        schedule.expression,
        schedule.time_zone,
        datetime.now(UTC),
    )
    return ScheduleOut(
        **{k: v for k, v in vars(schedule).items() if k != "next_due_date"},
        description=description,
        next_due_dates=upcoming if schedule.is_enabled else [],
    )


@router.get("/projects", response_model=Page[ProjectOut])
async def list_projects(
    caller: CallerDep, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[ProjectOut]:
    """The projects the caller may read (all of them for a global reader)."""
    readable = caller.access.readable_projects()
    items, _ = found = await services.projects.list_projects(cursor, limit, readable)
    return Page(items=[ProjectOut.model_validate(p) for p in items], **found.cursors())


@router.post("/projects", response_model=ProjectOut, status_code=201)
async def create_project(body: ProjectIn, services: ServicesDep) -> ProjectOut:
    return ProjectOut.model_validate(await services.projects.create_project(body.changes()))


@router.get("/projects/{project}", response_model=ProjectOut)
async def get_project(project: str, services: ServicesDep) -> ProjectOut:
    shown = ProjectOut.model_validate(await services.projects.get_project(project))
    sizes = await services.artifacts.project_sizes([project])
    return shown.model_copy(update={"artifacts_size": sizes[project]})


@router.put("/projects/{project}", response_model=ProjectOut)
async def put_project(
    project: str, body: ProjectPatch, services: ServicesDep, response: Response
) -> ProjectOut:
    result, created = await services.projects.put_project(project, body.changes())
    response.status_code = 201 if created else 200
    return ProjectOut.model_validate(result)


@router.patch("/projects/{project}", response_model=ProjectOut)
async def patch_project(project: str, body: ProjectPatch, services: ServicesDep) -> ProjectOut:
    return ProjectOut.model_validate(await services.projects.patch_project(project, body.changes()))


@router.delete("/projects/{project}", status_code=204)
async def delete_project(project: str, services: ServicesDep) -> Response:
    await services.projects.delete_project(project)
    return Response(status_code=204)


@router.get("/projects/{project}/jobs", response_model=Page[JobOut])
async def list_jobs(
    project: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[JobOut]:
    items, _ = found = await services.projects.list_jobs(project, cursor, limit)
    return Page(items=[JobOut.model_validate(j) for j in items], **found.cursors())


@router.post("/projects/{project}/jobs", response_model=JobOut, status_code=201)
async def create_job(project: str, body: JobIn, services: ServicesDep) -> JobOut:
    return JobOut.model_validate(await services.projects.create_job(project, body.changes()))


@router.get("/projects/{project}/jobs/{job}", response_model=JobOut)
async def get_job(project: str, job: str, services: ServicesDep) -> JobOut:
    return JobOut.model_validate(await services.projects.get_job(project, job))


@router.put("/projects/{project}/jobs/{job}", response_model=JobOut)
async def put_job(
    project: str, job: str, body: JobPut, services: ServicesDep, response: Response
) -> JobOut:
    result, created = await services.projects.put_job(project, job, body.changes())
    response.status_code = 201 if created else 200
    return JobOut.model_validate(result)


@router.patch("/projects/{project}/jobs/{job}", response_model=JobOut)
async def patch_job(project: str, job: str, body: JobPatch, services: ServicesDep) -> JobOut:
    return JobOut.model_validate(await services.projects.patch_job(project, job, body.changes()))


@router.delete("/projects/{project}/jobs/{job}", status_code=204)
async def delete_job(project: str, job: str, services: ServicesDep) -> Response:
    await services.projects.delete_job(project, job)
    return Response(status_code=204)


@router.get("/projects/{project}/schedules", response_model=Page[ScheduleOut])
async def list_schedules(
    project: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[ScheduleOut]:
    items, _ = found = await services.projects.list_schedules(project, cursor, limit)
    return Page(items=[schedule_out(s) for s in items], **found.cursors())


@router.post("/projects/{project}/schedules", response_model=ScheduleOut, status_code=201)
async def create_schedule(project: str, body: ScheduleIn, services: ServicesDep) -> ScheduleOut:
    schedule = await services.projects.create_schedule(project, body.changes())
    return schedule_out(schedule)


@router.get("/projects/{project}/schedules/{schedule}", response_model=ScheduleOut)
async def get_schedule(project: str, schedule: str, services: ServicesDep) -> ScheduleOut:
    return schedule_out(await services.projects.get_schedule(project, schedule))


@router.put("/projects/{project}/schedules/{schedule}", response_model=ScheduleOut)
async def put_schedule(
    project: str, schedule: str, body: SchedulePut, services: ServicesDep, response: Response
) -> ScheduleOut:
    result, created = await services.projects.put_schedule(project, schedule, body.changes())
    response.status_code = 201 if created else 200
    return schedule_out(result)


@router.patch("/projects/{project}/schedules/{schedule}", response_model=ScheduleOut)
async def patch_schedule(
    project: str, schedule: str, body: SchedulePatch, services: ServicesDep
) -> ScheduleOut:
    result = await services.projects.patch_schedule(project, schedule, body.changes())
    return schedule_out(result)


@router.delete("/projects/{project}/schedules/{schedule}", status_code=204)
async def delete_schedule(project: str, schedule: str, services: ServicesDep) -> Response:
    await services.projects.delete_schedule(project, schedule)
    return Response(status_code=204)
