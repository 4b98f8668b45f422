"""/projects/{project}/notifications: where a project's run and pipeline events are sent, and
each one's deliveries (docs/events.md). Operators manage them; the secret is write-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from orchestra.web.api.schemas import Body, Page
from orchestra.web.deps import Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["notifications"])
Event = Literal[
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.fixed",
    "pipeline.succeeded",
    "pipeline.failed",
    "approval.waiting",
    "schedule.skipped",
]


class NotificationPatch(Body):
    events: list[Event] | None = None
    jobs: list[str] | None = Field(default=None, description="only these jobs' runs (null: all)")
    pipelines: list[str] | None = Field(default=None, description="only these pipelines' runs")
    url: str | None = Field(default=None, description="an http or https URL (or give email)")
    email: str | None = Field(default=None, description="an address (needs an SMTP server)")
    secret: str | None = Field(
        default=None, description='signs each request (Standard Webhooks); "***" keeps it'
    )
    format: Literal["json", "slack"] | None = None
    is_enabled: bool | None = None


class NotificationPut(NotificationPatch):
    identifier: str | None = None


class NotificationIn(NotificationPatch):
    identifier: str


class NotificationOut(BaseModel):
    project: str
    identifier: str
    events: list[str]
    jobs: list[str] | None
    pipelines: list[str] | None
    url: str | None
    email: str | None
    secret: str | None = Field(description='"***" when one is set')
    format: str
    is_enabled: bool
    creation_date: datetime
    update_date: datetime


class DeliveryOut(BaseModel):
    identifier: int
    message: str = Field(description="the webhook-id, the same for every attempt")
    event: str
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_date: datetime | None
    last_attempt_date: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivery_date: datetime | None
    creation_date: datetime
    update_date: datetime


def _body(model: Body) -> dict[str, Any]:
    # Fields given as null mean "none" (no secret, all jobs): only those left out are absent.
    return model.model_dump(exclude_unset=True)


@router.get("/projects/{project}/notifications", response_model=Page[NotificationOut])
async def list_notifications(
    project: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[NotificationOut]:
    items, next_cursor = await services.notifications.list_notifications(project, cursor, limit)
    return Page(items=[NotificationOut(**n) for n in items], next_cursor=next_cursor)


@router.post("/projects/{project}/notifications", response_model=NotificationOut, status_code=201)
async def create_notification(
    project: str, body: NotificationIn, services: ServicesDep
) -> NotificationOut:
    return NotificationOut(**await services.notifications.create(project, _body(body)))


@router.get("/projects/{project}/notifications/{notification}", response_model=NotificationOut)
async def get_notification(
    project: str, notification: str, services: ServicesDep
) -> NotificationOut:
    return NotificationOut(**await services.notifications.get(project, notification))


@router.put("/projects/{project}/notifications/{notification}", response_model=NotificationOut)
async def put_notification(
    project: str,
    notification: str,
    body: NotificationPut,
    services: ServicesDep,
    response: Response,
) -> NotificationOut:
    shown, created = await services.notifications.put(project, notification, _body(body))
    response.status_code = 201 if created else 200
    return NotificationOut(**shown)


@router.patch("/projects/{project}/notifications/{notification}", response_model=NotificationOut)
async def patch_notification(
    project: str, notification: str, body: NotificationPatch, services: ServicesDep
) -> NotificationOut:
    return NotificationOut(**await services.notifications.patch(project, notification, _body(body)))


@router.delete("/projects/{project}/notifications/{notification}", status_code=204)
async def delete_notification(project: str, notification: str, services: ServicesDep) -> Response:
    await services.notifications.delete(project, notification)
    return Response(status_code=204)


@router.get(
    "/projects/{project}/notifications/{notification}/deliveries",
    response_model=Page[DeliveryOut],
)
async def list_deliveries(
    project: str,
    notification: str,
    services: ServicesDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[DeliveryOut]:
    items, next_cursor = await services.notifications.deliveries(
        project, notification, cursor, limit
    )
    return Page(items=[DeliveryOut(**d) for d in items], next_cursor=next_cursor)
