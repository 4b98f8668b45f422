"""The ASGI application: API, worker endpoint, metrics and website, built from a Services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestra import __version__
from orchestra.services import metrics_gauges
from orchestra.services.container import Services
from orchestra.web.api import artifacts as artifact_routes
from orchestra.web.api import audit, docs_page, me, members, projects, runs, system, users, workers
from orchestra.web.api import events as event_stream
from orchestra.web.api import notifications as notification_routes
from orchestra.web.api import openapi as openapi_document
from orchestra.web.api import pipeline_runs as pipeline_run_routes
from orchestra.web.api import pipelines as pipeline_definitions
from orchestra.web.api import secrets as project_secrets
from orchestra.web.api import webhooks as webhook_routes
from orchestra.web.api.schemas import ErrorOut
from orchestra.web.audit import AuditTrail
from orchestra.web.deps import authorize
from orchestra.web.errors import install_error_handlers
from orchestra.web.limits import BodyLimit
from orchestra.web.permissions import API, check_table

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}

Hook = Callable[[FastAPI], Awaitable[None]]


def create_app(
    services: Services,
    *,
    on_startup: list[Hook] | None = None,
    on_shutdown: list[Hook] | None = None,
    routers: list[APIRouter] | None = None,
    site: tuple[APIRouter, Callable[[FastAPI], None]] | None = None,
) -> FastAPI:
    """Build the application; `routers` adds the master's worker endpoint, `site` the website
    (its router, which authorizes with sessions, and its installer)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup or []:
            await hook(app)
        try:
            yield
        finally:
            for hook in on_shutdown or []:
                await hook(app)

    app = FastAPI(
        title="Orchestra",
        version=__version__,
        openapi_url=f"{API}/openapi.json",
        docs_url=None,  # web/api/docs_page.py: pinned, integrity-checked, under a CSP
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    openapi_document.install(app)  # descriptions, security schemes, enums (web/api/openapi.py)
    install_error_handlers(app)
    # Routes are matched in order, one at a time (FastAPI's own bookkeeping for each): the runs
    # routes, which take the triggers, the logs followed and the runs listed, come first. No
    # two routes here match the same path and method, so the order changes nothing else
    # (the trigger's route was matched after 34 others: a tenth of its CPU).
    api_routers = [m.router for m in (runs, system, me, users, projects, workers, audit)]
    api_routers.append(project_secrets.router)
    api_routers.append(members.router)
    api_routers.append(notification_routes.router)
    api_routers.append(pipeline_definitions.router)
    api_routers.append(pipeline_run_routes.router)
    api_routers.append(docs_page.router)
    api_routers.append(artifact_routes.router)
    api_routers.append(event_stream.router)
    api_routers += [*(routers or []), _metrics_router()]
    # Webhook deliveries authenticate by their signature alone (web/api/webhooks.py): no
    # caller, so no `authorize` and no line of the AuditTrail (the service writes its own).
    check_table([*api_routers, webhook_routes.router, *([site[0]] if site else [])])
    app.include_router(webhook_routes.router, responses=ERROR_RESPONSES)
    app.state.api_routers = api_routers
    for router in api_routers:
        app.include_router(router, dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)
    if site is not None:
        app.include_router(site[0])
        site[1](app)
    app.add_middleware(AuditTrail, audit=services.audit)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    return app


def _metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # The instance's gauges from the database, then this process's counters with them.
        await metrics_gauges.refresh(request.app.state.services.db)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
