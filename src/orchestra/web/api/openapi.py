"""The OpenAPI document (`/api/v1/openapi.json`): FastAPI's, completed once when first asked.

FastAPI builds the paths and schemas from the routes and models. This adds what a reader of the
document needs and the models do not say: the security schemes (a bearer token, or HTTP Basic
with the user and a token) and, on each operation, which it takes or that it is anonymous, and
the permission it needs (web/permissions.py); a description for each operation, parameter and
field that has none of its own (web/api/openapi_operations.py, openapi_fields.py); the closed
sets of statuses, roles and scopes as enums; and examples of the main bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from orchestra.domain.permissions import Action
from orchestra.web.api.openapi_fields import ENUMS, FIELDS, SCHEMA_FIELDS
from orchestra.web.api.openapi_operations import OPERATIONS, PARAMETERS
from orchestra.web.permissions import ROUTE_PERMISSIONS

INTRODUCTION = """Orchestra's HTTP API: projects, jobs, schedules, pipelines, runs and their
logs, workers, users and tokens. JSON in and out; dates in ISO 8601, UTC. Errors are a JSON
object with a human-readable `detail`: 400 or 422 invalid input, 401 no or bad credentials,
403 not allowed, 404 unknown (or a project the caller may not see), 409 a conflict, 413 too
large, 429 too many attempts. Collections take `limit` (default 50, at most 500) and `cursor`,
and answer `{"items": [...], "next_cursor": ...}` (null on the last page).

Authenticate with a token: `POST /api/v1/me/login` gives one for a user's password, and
`orchestra admin create-token USER` makes one on the server. Send it as `Authorization: Bearer
TOKEN`, or as HTTP Basic with the user's identifier and the token. (The website's session
cookie is not accepted by the API, so that no other site can act through it.) docs/reference.md
in the repository lists every route with the role it needs."""

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "a token (from `POST /api/v1/me/login`, `POST /api/v1/me/tokens` or "
        "`orchestra admin create-token`) as `Authorization: Bearer TOKEN`",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "HTTP Basic: the user's identifier, and a token as the password",
    },
}
AUTHENTICATED: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]

TAGS = [
    {"name": "runs", "description": "Trigger runs, follow them, read their logs, cancel, abort"},
    {"name": "projects", "description": "Projects, their jobs and schedules"},
    {"name": "pipelines", "description": "Graphs of jobs and approvals, and their runs"},
    {"name": "workers", "description": "The machines that run the steps"},
    {"name": "users", "description": "Users, their roles and tokens (administrators)"},
    {"name": "me", "description": "The caller: login, logout, password, own tokens"},
]

EXAMPLES: dict[str, dict[str, Any]] = {
    "TriggerIn": {"parameters": {"name": "world"}},
    "LoginIn": {"user": "ana", "password": "correct horse battery staple"},
    "ProjectIn": {"identifier": "example", "display_name": "Example"},
    "JobIn": {
        "identifier": "hello",
        "display_name": "Hello",
        "workspace": "hello",
        "properties": {"os": "linux"},
        "parameters": [{"key": "name", "description": "Who to greet", "default": "world"}],
        "steps": [{"name": "greet", "command": ["echo", "Hello {parameters[name]}"]}],
    },
    "ScheduleIn": {
        "identifier": "nightly",
        "job": "hello",
        "expression": "0 3 * * *",
        "parameters": {"name": "night"},
    },
    "RunOut": {
        "project": "example",
        "identifier": "5c1d0e6a-3f4b-4c2d-9e8f-0a1b2c3d4e5f",
        "job": "hello",
        "parameters": {"name": "world"},
        "source": {"type": "api", "user": "ana"},
        "worker": "w1",
        "status": "succeeded",
        "steps": [
            {
                "index": 0,
                "name": "greet",
                "command": ["echo", "Hello {parameters[name]}"],
                "status": "succeeded",
                "exit_code": 0,
                "start_date": "2026-12-06T09:00:00.120000Z",
                "completion_date": "2026-12-06T09:00:00.180000Z",
            }
        ],
        "workspace": "hello",
        "start_date": "2026-12-06T09:00:00.120000Z",
        "completion_date": "2026-12-06T09:00:00.190000Z",
        "creation_date": "2026-12-06T09:00:00.100000Z",
        "update_date": "2026-12-06T09:00:00.190000Z",
    },
    "ErrorOut": {"detail": "no run '5c1d0e6a-3f4b-4c2d-9e8f-0a1b2c3d4e5f' in project 'example'"},
}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` build (once) the completed document."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=INTRODUCTION,
                routes=app.routes,
                tags=TAGS,
            )
            complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]  # FastAPI's documented override


def complete(document: dict[str, Any]) -> None:
    """Add the security schemes, descriptions, enums and examples (see the module's doc)."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _operation(method.upper(), path, operation)
    for name, schema in document["components"].get("schemas", {}).items():
        _schema(name, schema)


def _operation(method: str, path: str, operation: dict[str, Any]) -> None:
    key = (method, path)
    action = ROUTE_PERMISSIONS.get(key)
    described = (operation.get("description") or OPERATIONS.get(key, "")).strip()
    if action is None:  # the webhooks: their signature is their authentication
        operation["security"] = []
    elif action is Action.PUBLIC:
        operation["security"] = []
        described += "\n\nAnonymous: no credentials needed."
    else:
        operation["security"] = AUTHENTICATED
        described += f"\n\nNeeds the permission `{action.value}` (docs/reference.md: roles)."
    if described.strip():
        operation["description"] = described.strip()
    for parameter in operation.get("parameters", []):
        if not parameter.get("description"):
            known = parameter.get("schema", {}).get("description") or PARAMETERS.get(
                parameter["name"]
            )
            if known:
                parameter["description"] = known


def _schema(name: str, schema: dict[str, Any]) -> None:
    model = name.removesuffix("-Input").removesuffix("-Output")
    if model in EXAMPLES:
        schema["examples"] = [EXAMPLES[model]]
    for field, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            text = SCHEMA_FIELDS.get((model, field)) or FIELDS.get(field)
            if text:
                prop["description"] = text
        values = ENUMS.get((model, field))
        if values:
            _enum(prop, list(dict.fromkeys(values)))


def _enum(prop: dict[str, Any], values: list[str]) -> None:
    """Put the values on the property's string schema (or its items', or in its non-null
    branch)."""
    branches = prop.get("anyOf", [prop])
    for branch in branches:
        if branch.get("type") == "array":
            branch.setdefault("items", {})["enum"] = values
        elif branch.get("type") == "string":
            branch["enum"] = values
