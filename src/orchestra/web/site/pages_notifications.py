"""Website pages for a project's notifications (operators): the list with a form to add or
replace one, each one's page with its deliveries log, enable, disable and delete. A secret is
never shown (set, kept or removed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestra.domain.notifications import EVENTS, MASK
from orchestra.errors import InvalidInput, NotFound
from orchestra.services.container import Services
from orchestra.web.site.forms import back, form_of, text
from orchestra.web.site.render import render

router = APIRouter()
DELIVERIES_SHOWN = 100


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _names(raw: str) -> list[str] | None:
    names = [n.strip() for n in raw.replace(",", " ").split() if n.strip()]
    return names or None


@router.get("/projects/{project}/notifications")
async def notifications_page(request: Request, project: str) -> Response:
    services = _services(request)
    project_row = await services.projects.get_project(project)
    items, _ = await services.notifications.list_notifications(project, None, 500)
    return render(
        request, "notifications.html", project=project_row, notifications=items, events=EVENTS
    )


@router.post("/projects/{project}/notifications")
async def save_notification(request: Request, project: str) -> Response:
    form = await form_of(request)
    page = f"/projects/{project}/notifications"
    try:
        identifier = text(form, "identifier")
        target = text(form, "target", default="url", required=False)
        address = text(form, "address")
        secret = text(form, "secret", required=False)
        keep = form.get("keep_secret") == "true"
        body = {
            "identifier": identifier,
            "events": [e for e in form.getlist("events") if isinstance(e, str)],
            "jobs": _names(text(form, "jobs", required=False)),
            "pipelines": _names(text(form, "pipelines", required=False)),
            "format": text(form, "format", required=False, default="json"),
            "secret": secret or (MASK if keep else None),
            ("email" if target == "email" else "url"): address,
        }
        _shown, created = await _services(request).notifications.put(project, identifier, body)
    except InvalidInput as exc:
        return back(page, error=str(exc))
    return back(page, f"Notification {identifier} {'created' if created else 'replaced'}.")


@router.get("/projects/{project}/notifications/{notification}")
async def notification_page(request: Request, project: str, notification: str) -> Response:
    services = _services(request)
    shown = await services.notifications.get(project, notification)
    deliveries, _ = await services.notifications.deliveries(
        project, notification, None, DELIVERIES_SHOWN
    )
    return render(request, "notification.html", notification=shown, deliveries=deliveries)


@router.post("/projects/{project}/notifications/{notification}/state")
async def notification_state(request: Request, project: str, notification: str) -> Response:
    form = await form_of(request)
    enabled = form.get("is_enabled") == "true"
    page = f"/projects/{project}/notifications/{notification}"
    try:
        await _services(request).notifications.patch(project, notification, {"is_enabled": enabled})
    except InvalidInput as exc:
        return back(page, error=str(exc))
    return back(page, f"Notification {'enabled' if enabled else 'disabled'}.")


@router.post("/projects/{project}/notifications/{notification}/delete")
async def delete_notification(request: Request, project: str, notification: str) -> Response:
    page = f"/projects/{project}/notifications"
    try:
        await _services(request).notifications.delete(project, notification)
    except NotFound as exc:
        return back(page, error=str(exc))
    return back(page, f"Notification {notification} deleted.")
