"""The one table that maps every route to the permission it needs. A route without a row makes
the application refuse to start; a caller without the permission gets 401 or 403, or 404 on a
route under /projects/{project} whose project they may not see (web/deps.py `check_access`)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.routing import APIRoute, APIWebSocketRoute

from orchestra.domain.permissions import Action

API = "/api/v1"
P = Action

ROUTE_PERMISSIONS: dict[tuple[str, str], Action] = {
    ("GET", f"{API}/health"): P.PUBLIC,
    ("GET", f"{API}/openapi.json"): P.PUBLIC,
    ("GET", f"{API}/docs"): P.PUBLIC,
    ("GET", f"{API}/docs/assets/{{name}}"): P.PUBLIC,  # Swagger UI's files (docs_page.py)
    ("POST", f"{API}/me/login"): P.PUBLIC,
    # Webhook deliveries: authenticated by their signature alone (web/api/webhooks.py).
    ("POST", f"{API}/webhooks/{{project}}/jobs/{{job}}"): P.PUBLIC,
    ("POST", f"{API}/webhooks/{{project}}/pipelines/{{pipeline}}"): P.PUBLIC,
    # The live event stream authenticates itself (a token, or the website's session cookie)
    # and sends each caller only what they may read (web/api/events.py).
    ("GET", f"{API}/events"): P.PUBLIC,
    ("GET", "/metrics"): P.PROJECT_READ,
    # The caller's own profile.
    ("GET", f"{API}/me"): P.SELF,
    ("POST", f"{API}/me/logout"): P.SELF,
    ("POST", f"{API}/me/password"): P.SELF_WRITE,
    ("GET", f"{API}/me/tokens"): P.SELF,
    ("POST", f"{API}/me/tokens"): P.TOKEN_CREATE,
    ("DELETE", f"{API}/me/tokens/{{token}}"): P.SELF_WRITE,
    # Users and their tokens.
    # The audit log: who changed what (auditors and administrators).
    ("GET", f"{API}/audit"): P.USER_READ,
    ("GET", f"{API}/users"): P.USER_READ,
    ("POST", f"{API}/users"): P.USER_WRITE,
    ("GET", f"{API}/users/{{user}}"): P.USER_READ,
    ("PATCH", f"{API}/users/{{user}}"): P.USER_WRITE,
    ("DELETE", f"{API}/users/{{user}}"): P.USER_WRITE,
    ("GET", f"{API}/users/{{user}}/tokens"): P.USER_READ,
    ("POST", f"{API}/users/{{user}}/tokens"): P.USER_WRITE,
    ("DELETE", f"{API}/users/{{user}}/tokens/{{token}}"): P.USER_WRITE,
    # Projects, jobs and schedules.
    ("GET", f"{API}/projects"): P.PROJECT_LIST,  # filtered to the projects one may read
    ("POST", f"{API}/projects"): P.PROJECT_WRITE,
    ("GET", f"{API}/projects/{{project}}"): P.PROJECT_READ,
    ("PUT", f"{API}/projects/{{project}}"): P.PROJECT_WRITE,
    ("PATCH", f"{API}/projects/{{project}}"): P.PROJECT_WRITE,
    ("DELETE", f"{API}/projects/{{project}}"): P.PROJECT_DELETE,
    ("GET", f"{API}/projects/{{project}}/jobs"): P.PROJECT_READ,
    ("POST", f"{API}/projects/{{project}}/jobs"): P.PROJECT_WRITE,
    ("GET", f"{API}/projects/{{project}}/jobs/{{job}}"): P.PROJECT_READ,
    ("PUT", f"{API}/projects/{{project}}/jobs/{{job}}"): P.PROJECT_WRITE,
    ("PATCH", f"{API}/projects/{{project}}/jobs/{{job}}"): P.PROJECT_WRITE,
    ("DELETE", f"{API}/projects/{{project}}/jobs/{{job}}"): P.PROJECT_WRITE,
    ("POST", f"{API}/projects/{{project}}/jobs/{{job}}/trigger"): P.RUN_TRIGGER,
    ("GET", f"{API}/projects/{{project}}/schedules"): P.PROJECT_READ,
    ("POST", f"{API}/projects/{{project}}/schedules"): P.PROJECT_WRITE,
    ("GET", f"{API}/projects/{{project}}/schedules/{{schedule}}"): P.PROJECT_READ,
    ("PUT", f"{API}/projects/{{project}}/schedules/{{schedule}}"): P.PROJECT_WRITE,
    ("PATCH", f"{API}/projects/{{project}}/schedules/{{schedule}}"): P.PROJECT_WRITE,
    ("DELETE", f"{API}/projects/{{project}}/schedules/{{schedule}}"): P.PROJECT_WRITE,
    # Pipelines' definitions (docs/pipelines.md).
    ("GET", f"{API}/projects/{{project}}/pipelines"): P.PROJECT_READ,
    ("POST", f"{API}/projects/{{project}}/pipelines"): P.PROJECT_WRITE,
    ("GET", f"{API}/projects/{{project}}/pipelines/{{pipeline}}"): P.PROJECT_READ,
    ("PUT", f"{API}/projects/{{project}}/pipelines/{{pipeline}}"): P.PROJECT_WRITE,
    ("PATCH", f"{API}/projects/{{project}}/pipelines/{{pipeline}}"): P.PROJECT_WRITE,
    ("DELETE", f"{API}/projects/{{project}}/pipelines/{{pipeline}}"): P.PROJECT_WRITE,
    ("POST", f"{API}/apply"): P.PROJECT_APPLY,  # project.write checked in each project
    # Project members (administrators change them).
    ("GET", f"{API}/projects/{{project}}/members"): P.PROJECT_READ,
    ("POST", f"{API}/projects/{{project}}/members"): P.MEMBER_WRITE,
    ("DELETE", f"{API}/projects/{{project}}/members/{{member:path}}"): P.MEMBER_WRITE,
    # Project secrets: names and dates for readers, values written by operators, never read.
    ("GET", f"{API}/projects/{{project}}/secrets"): P.PROJECT_READ,
    ("PUT", f"{API}/projects/{{project}}/secrets/{{name}}"): P.SECRET_WRITE,
    ("DELETE", f"{API}/projects/{{project}}/secrets/{{name}}"): P.SECRET_WRITE,
    # Notifications (docs/events.md): operators only, reading too (a URL may hold a credential).
    ("GET", f"{API}/projects/{{project}}/notifications"): P.PROJECT_WRITE,
    ("POST", f"{API}/projects/{{project}}/notifications"): P.PROJECT_WRITE,
    ("GET", f"{API}/projects/{{project}}/notifications/{{notification}}"): P.PROJECT_WRITE,
    ("PUT", f"{API}/projects/{{project}}/notifications/{{notification}}"): P.PROJECT_WRITE,
    ("PATCH", f"{API}/projects/{{project}}/notifications/{{notification}}"): P.PROJECT_WRITE,
    ("DELETE", f"{API}/projects/{{project}}/notifications/{{notification}}"): P.PROJECT_WRITE,
    ("GET", f"{API}/projects/{{project}}/notifications/{{notification}}/deliveries"): (
        P.PROJECT_WRITE
    ),
    # Runs and their logs.
    ("GET", f"{API}/projects/{{project}}/runs"): P.RUN_READ,
    ("GET", f"{API}/projects/{{project}}/runs/{{run}}"): P.RUN_READ,
    ("GET", f"{API}/projects/{{project}}/runs/{{run}}/log"): P.RUN_READ,
    ("GET", f"{API}/projects/{{project}}/runs/{{run}}/steps/{{index}}/log"): P.RUN_READ,
    ("POST", f"{API}/projects/{{project}}/runs/{{run}}/cancel"): P.RUN_CONTROL,
    ("POST", f"{API}/projects/{{project}}/runs/{{run}}/abort"): P.RUN_CONTROL,
    ("POST", f"{API}/projects/{{project}}/runs/{{run}}/force"): P.RUN_CONTROL,
    # Artifacts (docs/artifacts.md): read by whoever reads the run, uploaded by its worker (the
    # service checks it is the run's own worker, while it runs).
    ("GET", f"{API}/projects/{{project}}/runs/{{run}}/artifacts"): P.RUN_READ,
    ("GET", f"{API}/projects/{{project}}/runs/{{run}}/artifacts/{{path:path}}"): P.RUN_READ,
    ("POST", f"{API}/artifact-uploads/{{run}}"): P.WORKER_CONNECT,
    ("PUT", f"{API}/artifact-uploads/{{run}}"): P.WORKER_CONNECT,
    # Pipeline runs (docs/pipelines.md).
    ("POST", f"{API}/projects/{{project}}/pipelines/{{pipeline}}/trigger"): P.RUN_TRIGGER,
    ("GET", f"{API}/projects/{{project}}/pipeline-runs"): P.RUN_READ,
    ("GET", f"{API}/projects/{{project}}/pipeline-runs/{{run}}"): P.RUN_READ,
    ("POST", f"{API}/projects/{{project}}/pipeline-runs/{{run}}/cancel"): P.RUN_CONTROL,
    ("POST", f"{API}/projects/{{project}}/pipeline-runs/{{run}}/nodes/{{node}}/approve"): (
        P.RUN_APPROVE
    ),
    ("POST", f"{API}/projects/{{project}}/pipeline-runs/{{run}}/nodes/{{node}}/reject"): (
        P.RUN_APPROVE
    ),
    ("POST", f"{API}/projects/{{project}}/runs/{{run}}/rerun"): P.RUN_TRIGGER,
    # Workers.
    ("GET", f"{API}/workers"): P.WORKER_READ,
    ("GET", f"{API}/workers/{{worker}}"): P.WORKER_READ,
    ("PATCH", f"{API}/workers/{{worker}}"): P.WORKER_WRITE,
    ("DELETE", f"{API}/workers/{{worker}}"): P.WORKER_DELETE,
    ("POST", f"{API}/workers/{{worker}}/disconnect"): P.WORKER_WRITE,
    ("WEBSOCKET", f"{API}/workers/connect"): P.WORKER_CONNECT,
    # The website.
    ("GET", "/login"): P.PUBLIC,
    ("POST", "/login"): P.PUBLIC,
    ("GET", "/login/sso"): P.PUBLIC,  # single sign-on (web/site/sso.py)
    ("GET", "/login/sso/callback"): P.PUBLIC,
    ("POST", "/logout"): P.SELF,
    ("GET", "/"): P.SELF,
    ("GET", "/profile"): P.SELF,
    ("POST", "/profile/password"): P.SELF_WRITE,
    ("POST", "/profile/tokens"): P.TOKEN_CREATE,
    ("POST", "/profile/tokens/{token}/revoke"): P.SELF_WRITE,
    ("GET", "/projects"): P.PROJECT_LIST,
    ("POST", "/projects/{project}/members"): P.MEMBER_WRITE,
    ("POST", "/projects/{project}/members/remove"): P.MEMBER_WRITE,
    ("GET", "/projects/{project}"): P.PROJECT_READ,
    ("POST", "/projects/{project}/state"): P.PROJECT_WRITE,
    ("POST", "/projects/{project}/secrets"): P.SECRET_WRITE,
    ("POST", "/projects/{project}/secrets/{name}/delete"): P.SECRET_WRITE,
    ("GET", "/projects/{project}/notifications"): P.PROJECT_WRITE,
    ("POST", "/projects/{project}/notifications"): P.PROJECT_WRITE,
    ("GET", "/projects/{project}/notifications/{notification}"): P.PROJECT_WRITE,
    ("POST", "/projects/{project}/notifications/{notification}/state"): P.PROJECT_WRITE,
    ("POST", "/projects/{project}/notifications/{notification}/delete"): P.PROJECT_WRITE,
    ("GET", "/projects/{project}/jobs/{job}"): P.PROJECT_READ,
    ("POST", "/projects/{project}/jobs/{job}/state"): P.PROJECT_WRITE,
    ("POST", "/projects/{project}/jobs/{job}/trigger"): P.RUN_TRIGGER,
    ("GET", "/projects/{project}/pipelines/{pipeline}"): P.PROJECT_READ,
    ("GET", "/projects/{project}/schedules/{schedule}"): P.PROJECT_READ,
    ("POST", "/projects/{project}/schedules/{schedule}/state"): P.PROJECT_WRITE,
    ("GET", "/projects/{project}/runs"): P.RUN_READ,
    ("GET", "/projects/{project}/runs/{run}"): P.RUN_READ,
    ("GET", "/projects/{project}/runs/{run}/log"): P.RUN_READ,
    ("GET", "/projects/{project}/runs/{run}/log/lines"): P.RUN_READ,  # web/site/logview.py
    ("GET", "/projects/{project}/runs/{run}/state"): P.RUN_READ,
    ("GET", "/projects/{project}/runs/{run}/artifacts/{path:path}"): P.RUN_READ,
    ("POST", "/projects/{project}/runs/{run}/cancel"): P.RUN_CONTROL,
    ("POST", "/projects/{project}/runs/{run}/abort"): P.RUN_CONTROL,
    ("POST", "/projects/{project}/runs/{run}/rerun"): P.RUN_TRIGGER,
    ("POST", "/projects/{project}/pipelines/{pipeline}/trigger"): P.RUN_TRIGGER,
    ("GET", "/projects/{project}/pipeline-runs"): P.RUN_READ,
    ("GET", "/projects/{project}/pipeline-runs/{run}"): P.RUN_READ,
    ("GET", "/projects/{project}/pipeline-runs/{run}/live"): P.RUN_READ,
    ("POST", "/projects/{project}/pipeline-runs/{run}/cancel"): P.RUN_CONTROL,
    ("POST", "/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve"): P.RUN_APPROVE,
    ("POST", "/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject"): P.RUN_APPROVE,
    ("GET", "/workers"): P.WORKER_READ,
    ("GET", "/workers/{worker}"): P.WORKER_READ,
    ("POST", "/workers/{worker}/state"): P.WORKER_WRITE,
    ("POST", "/workers/{worker}/approval"): P.WORKER_APPROVE,
    ("POST", "/workers/{worker}/disconnect"): P.WORKER_WRITE,
    ("GET", "/audit"): P.USER_READ,
    ("GET", "/users"): P.USER_READ,
    ("POST", "/users"): P.USER_WRITE,
    ("GET", "/users/{user}"): P.USER_READ,
    ("POST", "/users/{user}"): P.USER_WRITE,
    ("POST", "/users/{user}/tokens"): P.USER_WRITE,
    ("POST", "/users/{user}/tokens/{token}/revoke"): P.USER_WRITE,
}


def permission_for(method: str, path: str) -> Action:
    """The permission a route needs; KeyError (a bug caught at start) if it has no row."""
    return ROUTE_PERMISSIONS[(method, path)]


def router_routes(routers: Iterable[APIRouter]) -> list[tuple[str, str]]:
    """Every (method, path) these routers serve, as the permission table names them."""
    routes: list[tuple[str, str]] = []
    for route in (r for router in routers for r in router.routes):
        if isinstance(route, APIRoute):
            routes.extend((method, route.path) for method in sorted(route.methods or ()))
        elif isinstance(route, APIWebSocketRoute):
            routes.append(("WEBSOCKET", route.path))
    return routes


def check_table(routers: Iterable[APIRouter]) -> None:
    """Refuse to build an application with a route the table does not cover."""
    missing = [route for route in router_routes(routers) if route not in ROUTE_PERMISSIONS]
    if missing:
        raise RuntimeError(f"routes without a permission row: {missing}")
