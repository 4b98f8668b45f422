"""The generated tables of docs/reference.md: every route with the permission it needs, which
roles hold each permission, and every command of the CLI.

    python scripts/reference_tables.py           # print the tables
    python scripts/reference_tables.py --write   # put them in docs/reference.md, between markers

They come from the application itself (its routes, web/permissions.py, web/api/openapi.py's
descriptions, domain/permissions.py) and the CLI's commands, so the reference cannot miss one:
tests/integration/test_reference_doc.py checks that every route and command is in the file.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
WEBHOOKS = "none: the delivery's signature"
# The routes that are not operations of the OpenAPI document: the website's pages and forms
# (POST routes are its forms, with a CSRF token), the worker endpoint, metrics, the docs page.
OTHERS = {
    "/api/v1/docs": "Swagger UI over the OpenAPI document.",
    "/api/v1/docs/assets/{name}": "Swagger UI's files, installed with Orchestra.",
    "/api/v1/workers/connect": "The worker endpoint (WebSocket); the `worker` role.",
    "/metrics": "Prometheus metrics (metrics.md).",
    "/": "Home: running and recent runs, workers.",
    "/login": "The login page and form.",
    "/login/sso": "Single sign-on: off to the identity provider.",
    "/login/sso/callback": "Single sign-on: back from the identity provider.",
    "/logout": "End the session.",
    "/profile": "The caller's profile and tokens.",
    "/profile/password": "Change one's password.",
    "/profile/tokens": "Create a token.",
    "/profile/tokens/{token}/revoke": "Revoke one's token.",
    "/projects": "The projects one may read.",
    "/projects/{project}": "A project: jobs, pipelines, schedules, recent runs.",
    "/projects/{project}/state": "Enable or disable the project.",
    "/projects/{project}/jobs/{job}": "A job, its trigger form and its recent runs.",
    "/projects/{project}/jobs/{job}/state": "Enable or disable the job.",
    "/projects/{project}/jobs/{job}/trigger": "Trigger a run.",
    "/projects/{project}/runs": "The project's runs, filtered.",
    "/projects/{project}/runs/{run}": "A run: details, steps, results, its log (search, times).",
    "/projects/{project}/runs/{run}/log": "The log as text (`?download=true` as a file).",
    "/projects/{project}/runs/{run}/state": "The run's status as JSON, for the page's script.",
    "/projects/{project}/runs/{run}/cancel": "Cancel the run.",
    "/projects/{project}/runs/{run}/abort": "Abort the run.",
    "/projects/{project}/runs/{run}/artifacts/{path:path}": "Download or show an artifact.",
    "/projects/{project}/schedules/{schedule}": "A schedule and its next due times.",
    "/projects/{project}/schedules/{schedule}/state": "Enable or disable the schedule.",
    "/projects/{project}/secrets": "Set a project secret.",
    "/projects/{project}/secrets/{name}/delete": "Delete a project secret.",
    "/projects/{project}/members": "Add a member or change its role.",
    "/projects/{project}/members/remove": "Remove a member.",
    "/projects/{project}/notifications": "The project's notifications; create one.",
    "/projects/{project}/notifications/{notification}": "A notification and its deliveries.",
    "/projects/{project}/notifications/{notification}/state": "Enable or disable it.",
    "/projects/{project}/notifications/{notification}/delete": "Delete it.",
    "/projects/{project}/pipelines/{pipeline}": "A pipeline, its graph and its runs.",
    "/projects/{project}/pipelines/{pipeline}/trigger": "Trigger a pipeline run.",
    "/projects/{project}/pipeline-runs": "The project's pipeline runs.",
    "/projects/{project}/pipeline-runs/{run}": "A pipeline run, drawn live.",
    "/projects/{project}/pipeline-runs/{run}/cancel": "Cancel the pipeline run.",
    "/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve": "Approve the node.",
    "/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject": "Reject the node.",
    "/workers": "The workers.",
    "/workers/{worker}": "A worker and its runs.",
    "/workers/{worker}/state": "Enable or disable the worker.",
    "/workers/{worker}/approval": "Approve the worker.",
    "/workers/{worker}/disconnect": "Disconnect the worker.",
    "/audit": "The audit log.",
    "/users": "The users; create one.",
    "/users/{user}": "A user; change them.",
    "/users/{user}/tokens": "Create a token for the user.",
    "/users/{user}/tokens/{token}/revoke": "Revoke the user's token.",
}


def app_routes() -> list[tuple[str, str, Any]]:
    """Every (method, path) the all-in-one server answers (the website's static files aside)."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    from orchestra.server import build_app
    from orchestra.services.container import Services
    from orchestra.settings import load_settings

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'reference.sqlite'}"
        settings = load_settings({"database_url": url, "data_dir": Path(scratch)}, environ={})
        app = build_app(Services.build(settings))
    found: list[tuple[str, str, Any]] = []
    for prefix, route in _flat(app.routes, ""):
        if isinstance(route, APIRoute):
            methods = sorted(set(route.methods or ()) - {"HEAD"})
            found += [(method, prefix + route.path, route.endpoint) for method in methods]
        elif isinstance(route, APIWebSocketRoute):
            found.append(("WEBSOCKET", prefix + route.path, route.endpoint))
    return list(dict.fromkeys(found))


def _flat(routes: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """Routes with those of included routers (which newer FastAPI keeps as one entry each)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _flat(included.routes, prefix + getattr(context, "prefix", ""))
        else:
            yield prefix, route


def _described(method: str, path: str, endpoint: Any) -> str:
    """The first sentence of what the route does (the OpenAPI table, or its docstring)."""
    from orchestra.web.api.openapi_operations import OPERATIONS

    documented = path.replace("{path:path}", "{path}")  # as the OpenAPI document writes it
    text = OPERATIONS.get((method, documented)) or getattr(endpoint, "__doc__", None) or ""
    text = text or OTHERS.get(path, "")
    first = re.split(r"(?<=\.)\s", " ".join(text.split()), maxsplit=1)[0] if text else ""
    return first.replace("|", "\\|")


def routes_table() -> str:
    from orchestra.web.permissions import ROUTE_PERMISSIONS

    rows = ["| method | route | permission | what it does |", "|---|---|---|---|"]
    for method, path, endpoint in app_routes():
        action = ROUTE_PERMISSIONS.get((method, path))
        permission = WEBHOOKS if action is None else f"`{action.value}`"
        what = _described(method, path, endpoint)
        rows.append(f"| {method} | `{path}` | {permission} | {what} |")
    return "\n".join(rows)


def roles_table() -> str:
    from orchestra.domain.permissions import _ANY_USER, GRANTS, Action, Role

    roles = list(Role)
    rows = [
        "| permission | " + " | ".join(r.value for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for action in Action:
        if action is Action.PUBLIC:
            marks = ["anyone, even anonymous"] + [""] * (len(roles) - 1)
        elif action in _ANY_USER:
            marks = ["any logged-in user"] + [""] * (len(roles) - 1)
        else:
            marks = ["yes" if action in GRANTS[role] else "" for role in roles]
        rows.append(f"| `{action.value}` | " + " | ".join(marks) + " |")
    return "\n".join(rows)


def _commands(command: Any, prefix: list[str]) -> Iterator[tuple[str, str, str]]:
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, [*prefix, name])
        return
    arguments: list[str] = []
    for parameter in command.params:
        if parameter.param_type_name == "argument":
            arguments.append((parameter.name or "").upper())
        else:
            names = [o for o in parameter.opts if o.startswith("--")] or list(parameter.opts)
            arguments.append(f"[{names[0]}]")
    help_text = " ".join((command.help or "").split())
    first = re.split(r"(?<=\.)\s", help_text, maxsplit=1)[0]
    yield " ".join(prefix), " ".join(arguments), first.replace("|", "\\|")


def cli_commands() -> list[tuple[str, str, str]]:
    import typer

    from orchestra.cli.main import app

    return list(_commands(typer.main.get_command(app), ["orchestra"]))


def commands_table() -> str:
    rows = ["| command | arguments and options | what it does |", "|---|---|---|"]
    for name, arguments, what in cli_commands():
        rows.append(f"| `{name}` | {arguments} | {what} |")
    return "\n".join(rows)


TABLES = {"routes": routes_table, "roles": roles_table, "commands": commands_table}


def write(text: str) -> str:
    """The reference with each generated table put between its markers."""
    for name, build in TABLES.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"docs/reference.md has no {begin} ... {end} markers")
        block = f"{begin}\n{build()}\n{end}"
        text = pattern.sub(lambda _match: block, text)  # noqa: B023 (used at once, in the loop)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/reference.md")
    options = parser.parse_args()
    if options.write:
        REFERENCE.write_text(write(REFERENCE.read_text()))
        return
    for name, build in TABLES.items():
        sys.stdout.write(f"## {name}\n\n{build()}\n\n")


if __name__ == "__main__":
    main()
