"""Schemathesis against the OpenAPI document of the in-process application, as each role:
whatever it sends, the API never answers with a server error, and every answer whose status
the document describes has the body the document says.

Run alone with `pytest -m schemathesis`. SQLite only: the PostgreSQL paths are the same code.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from orchestra.services.container import Services
from orchestra.web.app import create_app
from tests.conftest import build_services
from tests.helpers import insert_worker
from tests.support.databases import SqliteTemplate

pytestmark = [pytest.mark.schemathesis, pytest.mark.timeout(240)]
MAX_EXAMPLES = 10
CHECKS = [not_a_server_error, response_schema_conformance]
ROLES = ("administrator", "operator", "auditor", "viewer", "worker")
JOB = {
    "identifier": "j",
    "parameters": [{"key": "who", "default": "world"}],
    "steps": [{"name": "greet", "command": ["echo", "{parameters[who]}"]}],
}
# Existing resources, so that generated requests also reach the handlers past their 404s.
PATH_PARAMETERS = {
    "project": "p",
    "job": "j",
    "schedule": "s",
    "user": "target",
    "worker": "w1",
    "index": 0,
}


async def build_world(services: Services) -> dict[str, str]:
    """Users with tokens, a project with a job, a schedule, a run and a worker."""
    secrets = {}
    for role in ROLES:
        await services.users.create_user(role, roles=[role])
        _token, secrets[role] = await services.users.create_token(role, "schemathesis", None)
    await services.users.create_user("target", roles=["viewer"])
    await services.projects.create_project({"identifier": "p"})
    await services.projects.create_job("p", JOB)
    await services.projects.create_schedule(
        "p", {"identifier": "s", "job": "j", "expression": "@daily"}
    )
    run = await services.runs.trigger("p", "j", {}, {"type": "test"})
    secrets["run"] = run.identifier
    await insert_worker(services, "w1", "administrator")
    await services.close()
    return secrets


def operations_in_order(schema: Any) -> list[Any]:
    """Every operation, the destructive ones (DELETE, logout) last."""
    operations = [result.ok() for result in schema.get_all_operations()]

    def last(operation: Any) -> bool:
        return operation.method.upper() == "DELETE" or operation.path.endswith("/logout")

    return sorted(operations, key=last)


def fuzz(operation: Any, secret: str, path_parameters: dict[str, Any] | None) -> list[str]:
    """Generated requests to one operation; the server errors they met."""
    errors: list[str] = []
    strategies = [
        operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    ]

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @hypothesis.given(case=hypothesis.strategies.one_of(*strategies))
    def check(case: Any) -> None:
        if isinstance(case.query, dict):
            # Following the log of a pending run streams until it ends: read it once instead.
            case.query.pop("follow", None)
        headers = {"Authorization": f"Bearer {secret}"}
        try:
            response = case.call(headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:  # an unhandled error in the application is a server error too
            errors.append(f"{case.method} {case.formatted_path}: {exc!s:.300}")

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        pass
    return errors


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_api_never_answers_a_server_error(
    role: str, sqlite_template: SqliteTemplate, tmp_path: Path
) -> None:
    url = sqlite_template.copy(tmp_path)
    secrets = asyncio.run(build_world(build_services(url, tmp_path)))
    services = build_services(url, tmp_path)

    async def close(_app: Any) -> None:
        await services.close()

    app = create_app(services, on_shutdown=[close])
    try:
        schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
        operations = operations_in_order(schema)
        assert len(operations) > 40
        errors: list[str] = []
        fixed = {**PATH_PARAMETERS, "run": secrets["run"]}
        for operation in operations:
            if operation.path.endswith("/events"):
                # The live event stream never ends: tests/system/test_event_stream.py.
                continue
            names = {p.name for p in operation.path_parameters}
            known = {k: v for k, v in fixed.items() if k in names} or None
            errors += fuzz(operation, secrets[role], known)
            if known:
                errors += fuzz(operation, secrets[role], None)
    finally:
        asgi.shutdown_lifespans()
    assert errors == []
