"""The authorization matrix, generated from the permission table: every route against every
role, project member (a user's own, a group's) and token scope or project limit, on both
engines. One test per engine builds one world and collects every mismatch. The expected outcome
of each call is derived here from the rules (CONTRACT sections 4 and 9) written out again, so a
wrong rule in domain/access.py fails here."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter
from starlette.routing import Route

from orchestra.domain.permissions import Action, allowed
from orchestra.domain.statuses import RunStatus
from orchestra.server import build_app
from orchestra.services.container import Services
from orchestra.storage import runs as run_storage
from orchestra.web.api import webhooks as webhook_routes
from orchestra.web.permissions import API, ROUTE_PERMISSIONS, check_table, router_routes
from tests.conftest import MakeUser
from tests.helpers import RecordingClient, auth, insert_worker, leaks, stored_secret_values

# Each caller with a global role: the roles it has, None for anonymous. The disabled
# administrator must be treated as anonymous.
CALLERS: dict[str, list[str] | None] = {
    "anonymous": None,
    "no-role": [],
    "viewer": ["viewer"],
    "auditor": ["auditor"],
    "operator": ["operator"],
    "worker": ["worker"],
    "administrator": ["administrator"],
    "disabled-administrator": None,
}


@dataclass(frozen=True)
class Profile:
    """A caller of the extended matrix: global roles, a member role in every project of the
    world but q (its own, or its group's), and its token's scopes and projects."""

    roles: list[str]
    member: str | None = None
    group: bool = False
    q_member: str | None = None  # its role in project q
    scopes: list[str] | None = None
    projects: list[str] | None = None


PROFILES: dict[str, Profile] = {
    **{name: Profile(roles) for name, roles in CALLERS.items() if roles is not None},
    "member-viewer": Profile([], member="viewer"),
    "member-operator": Profile([], member="operator"),
    "group-operator": Profile([], member="operator", group=True),
    "q-operator": Profile([], q_member="operator"),
    "read-token": Profile(["administrator"], scopes=["read"]),
    "trigger-token": Profile(["administrator"], scopes=["trigger"]),
    "write-token": Profile(["administrator"], scopes=["write"]),
    "admin-token": Profile(["administrator"], scopes=["admin"]),
    "operator-write-token": Profile(["operator"], scopes=["write", "read"]),
    "member-read-token": Profile([], member="operator", scopes=["read"]),
    "p-token": Profile(["administrator"], projects=["p"]),
    "q-token": Profile(["administrator"], projects=["q"]),
    "viewer-q-token": Profile(["viewer"], scopes=["admin"], projects=["q"]),
}
ALL_CALLERS = ["anonymous", "disabled-administrator", *PROFILES]
GROUP = "team ops/é"  # any printable characters
LOGIN_PASSWORD = "correct horse battery"
JOB = {
    "identifier": "j",
    "parameters": [{"key": "who", "default": "world"}],
    "steps": [{"name": "s1", "command": ["echo", "{parameters[who]}"]}],
}
PIPELINE = {"identifier": "pl", "nodes": [{"identifier": "n", "job": "j"}]}
GATED = {"identifier": "gated", "nodes": [{"identifier": "g", "approval": {}}]}
# The answer an allowed caller gets from each route, given the world built below. Routes not
# listed here (added later) only have to answer something else than 401 or 403.
SUCCESS: dict[tuple[str, str], int] = {
    ("GET", "/api/v1/health"): 200,
    ("GET", "/api/v1/openapi.json"): 200,
    ("GET", "/api/v1/docs"): 200,
    ("POST", "/api/v1/me/login"): 200,
    ("GET", "/metrics"): 200,
    ("GET", "/api/v1/me"): 200,
    ("POST", "/api/v1/me/logout"): 204,
    ("POST", "/api/v1/me/password"): 422,  # these users have no password: "old password wrong"
    ("GET", "/api/v1/me/tokens"): 200,
    ("POST", "/api/v1/me/tokens"): 201,
    ("DELETE", "/api/v1/me/tokens/{token}"): 204,
    ("GET", "/api/v1/users"): 200,
    ("POST", "/api/v1/users"): 201,
    ("GET", "/api/v1/users/{user}"): 200,
    ("PATCH", "/api/v1/users/{user}"): 200,
    ("DELETE", "/api/v1/users/{user}"): 204,
    ("GET", "/api/v1/users/{user}/tokens"): 200,
    ("POST", "/api/v1/users/{user}/tokens"): 201,
    ("DELETE", "/api/v1/users/{user}/tokens/{token}"): 204,
    ("GET", "/api/v1/projects"): 200,
    ("POST", "/api/v1/projects"): 201,
    ("GET", "/api/v1/projects/{project}"): 200,
    ("PUT", "/api/v1/projects/{project}"): 200,
    ("PATCH", "/api/v1/projects/{project}"): 200,
    ("DELETE", "/api/v1/projects/{project}"): 204,
    ("GET", "/api/v1/projects/{project}/jobs"): 200,
    ("POST", "/api/v1/projects/{project}/jobs"): 201,
    ("GET", "/api/v1/projects/{project}/jobs/{job}"): 200,
    ("PUT", "/api/v1/projects/{project}/jobs/{job}"): 200,
    ("PATCH", "/api/v1/projects/{project}/jobs/{job}"): 200,
    ("DELETE", "/api/v1/projects/{project}/jobs/{job}"): 204,
    ("POST", "/api/v1/projects/{project}/jobs/{job}/trigger"): 201,
    ("GET", "/api/v1/projects/{project}/schedules"): 200,
    ("POST", "/api/v1/projects/{project}/schedules"): 201,
    ("GET", "/api/v1/projects/{project}/schedules/{schedule}"): 200,
    ("PUT", "/api/v1/projects/{project}/schedules/{schedule}"): 200,
    ("PATCH", "/api/v1/projects/{project}/schedules/{schedule}"): 200,
    ("DELETE", "/api/v1/projects/{project}/schedules/{schedule}"): 204,
    ("GET", "/api/v1/projects/{project}/pipelines"): 200,
    ("POST", "/api/v1/projects/{project}/pipelines"): 201,
    ("GET", "/api/v1/projects/{project}/pipelines/{pipeline}"): 200,
    ("PUT", "/api/v1/projects/{project}/pipelines/{pipeline}"): 200,
    ("PATCH", "/api/v1/projects/{project}/pipelines/{pipeline}"): 200,
    ("DELETE", "/api/v1/projects/{project}/pipelines/{pipeline}"): 204,
    ("POST", "/api/v1/apply"): 200,
    ("GET", "/api/v1/projects/{project}/runs"): 200,
    ("GET", "/api/v1/projects/{project}/runs/{run}"): 200,
    ("GET", "/api/v1/projects/{project}/runs/{run}/log"): 200,
    ("GET", "/api/v1/projects/{project}/runs/{run}/steps/{index}/log"): 200,
    ("POST", "/api/v1/projects/{project}/runs/{run}/cancel"): 200,
    ("POST", "/api/v1/projects/{project}/runs/{run}/abort"): 200,
    ("POST", "/api/v1/projects/{project}/runs/{run}/rerun"): 201,
    ("POST", "/api/v1/projects/{project}/pipelines/{pipeline}/trigger"): 201,
    ("GET", "/api/v1/projects/{project}/pipeline-runs"): 200,
    ("GET", "/api/v1/projects/{project}/pipeline-runs/{run}"): 200,
    ("POST", "/api/v1/projects/{project}/pipeline-runs/{run}/cancel"): 200,
    ("POST", "/api/v1/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve"): 200,
    ("POST", "/api/v1/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject"): 200,
    ("GET", "/api/v1/workers"): 200,
    ("GET", "/api/v1/workers/{worker}"): 200,
    ("PATCH", "/api/v1/workers/{worker}"): 200,
    ("DELETE", "/api/v1/workers/{worker}"): 204,
    ("POST", "/api/v1/workers/{worker}/disconnect"): 200,
    ("GET", "/api/v1/projects/{project}/members"): 200,
    ("POST", "/api/v1/projects/{project}/members"): 201,
    ("DELETE", "/api/v1/projects/{project}/members/{member:path}"): 204,
}


@dataclass
class Call:
    path: str
    json: Any = None
    secret: str | None = None  # overrides the caller's usual token (logout revokes it)


class World:
    """Project p with job j and schedule s, a target user with tokens, a worker, runs; and
    fresh resources on demand for the calls that delete or consume what they touch."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.numbers = itertools.count(1)
        self.secrets: dict[str, str | None] = {}
        self.run = ""
        self.project = "p"  # the project of the last call prepared

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.numbers)}"

    async def build(self, make_user: MakeUser) -> None:
        for name, roles in CALLERS.items():
            if name == "anonymous":
                self.secrets[name] = None
            elif name == "disabled-administrator":
                self.secrets[name] = await make_user(name, ["administrator"], is_enabled=False)
            else:
                assert roles is not None
                self.secrets[name] = await make_user(name, roles)
        await self.services.users.create_user("target", roles=["viewer"])
        await self.services.users.create_user("login-user", password=LOGIN_PASSWORD)
        await self.services.projects.create_project({"identifier": "p"})
        await self.services.projects.create_project({"identifier": "q"})
        for name, profile in PROFILES.items():
            if name not in CALLERS:
                await self.services.users.create_user(name, roles=profile.roles)
                self.secrets[name] = await self.token_secret(name, "matrix")
        await self.services.users.update_user("group-operator", {"groups": [GROUP, "other"]})
        for name, profile in PROFILES.items():
            if profile.q_member is not None:
                await self.services.members.put_member("q", "user", name, profile.q_member)
        await self.add_members("p")
        await self.services.projects.create_job("p", JOB)
        await self.services.projects.create_schedule(
            "p", {"identifier": "s", "job": "j", "expression": "@daily"}
        )
        await self.services.pipelines.create_pipeline("p", PIPELINE)
        await self.services.pipelines.create_pipeline("p", GATED)
        self.run = await self.pending_run()
        await insert_worker(self.services, "w1", "worker")

    async def add_members(self, project: str) -> None:
        """Give the member callers their roles in this project."""
        for name, profile in PROFILES.items():
            if profile.member is not None and not profile.group:
                await self.services.members.put_member(project, "user", name, profile.member)
        await self.services.members.put_member(project, "group", GROUP, "operator")

    async def token_secret(self, caller: str, description: str) -> str:
        """A new token of the caller's user, with the caller's scopes and projects."""
        profile = PROFILES[caller]
        _token, secret = await self.services.users.create_token(
            caller, description, None, scopes=profile.scopes, projects=profile.projects
        )
        return secret

    async def pending_run(self) -> str:
        run = await self.services.runs.trigger("p", "j", {}, {"type": "test"})
        return run.identifier

    async def running_run(self) -> str:
        identifier = await self.pending_run()
        async with self.services.db.transaction() as conn:
            moved = await run_storage.set_run_status(
                conn, identifier, RunStatus.RUNNING, {"worker": "w1"}
            )
        assert moved
        return identifier

    async def token_of(self, user: str) -> str:
        token, _secret = await self.services.users.create_token(user, "matrix", None)
        return token.identifier

    async def call(self, method: str, template: str, caller: str) -> Call:
        """The concrete request for one route and caller, creating what it needs."""
        key = (method, template)
        values = {
            "project": "p",
            "job": "j",
            "schedule": "s",
            "pipeline": "pl",
            "run": self.run,
            "user": "target",
            "worker": "w1",
            "index": "0",
        }
        body: Any = None
        secret = None
        maker = _PREPARE.get(key)
        if maker is not None:
            extra_values, body, secret = await maker(self, caller)
            values.update(extra_values)
        self.project = values["project"]
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), template)
        return Call(path, body, secret)


Prepared = tuple[dict[str, str], Any, str | None]


async def _login(world: World, caller: str) -> Prepared:
    return {}, {"user": "login-user", "password": LOGIN_PASSWORD}, None


async def _logout(world: World, caller: str) -> Prepared:
    # Logout revokes the token used: give each caller a throwaway one.
    if world.secrets[caller] is None or caller == "disabled-administrator":
        return {}, None, None
    return {}, None, await world.token_secret(caller, "logout")


async def _password(world: World, caller: str) -> Prepared:
    return {}, {"old_password": "not the password", "new_password": "a new password"}, None


async def _own_token(world: World, caller: str) -> Prepared:
    if world.secrets[caller] is None or caller == "disabled-administrator":
        return {"token": str(uuid.uuid4())}, None, None
    return {"token": await world.token_of(caller)}, None, None


async def _target_token(world: World, caller: str) -> Prepared:
    return {"token": await world.token_of("target")}, None, None


async def _new_own_token(world: World, caller: str) -> Prepared:
    # A token limited to projects may only make tokens limited to some of them.
    profile = PROFILES.get(caller)
    projects = profile.projects if profile is not None else None
    return {}, {"description": "mine", **({"projects": projects} if projects else {})}, None


async def _new_user(world: World, caller: str) -> Prepared:
    return {}, {"identifier": world.fresh("new-user"), "roles": ["viewer"]}, None


async def _deleted_user(world: World, caller: str) -> Prepared:
    user = world.fresh("old-user")
    await world.services.users.create_user(user)
    return {"user": user}, None, None


async def _new_project(world: World, caller: str) -> Prepared:
    return {}, {"identifier": world.fresh("new-project")}, None


async def _deleted_project(world: World, caller: str) -> Prepared:
    project = world.fresh("old-project")
    await world.services.projects.create_project({"identifier": project})
    await world.add_members(project)
    return {"project": project}, None, None


async def _new_job(world: World, caller: str) -> Prepared:
    return {}, {**JOB, "identifier": world.fresh("new-job")}, None


async def _deleted_job(world: World, caller: str) -> Prepared:
    job = world.fresh("old-job")
    await world.services.projects.create_job("p", {**JOB, "identifier": job})
    return {"job": job}, None, None


async def _new_schedule(world: World, caller: str) -> Prepared:
    body = {"identifier": world.fresh("new-schedule"), "job": "j", "expression": "0 3 * * *"}
    return {}, body, None


async def _deleted_schedule(world: World, caller: str) -> Prepared:
    schedule = world.fresh("old-schedule")
    data = {"identifier": schedule, "job": "j", "expression": "@hourly"}
    await world.services.projects.create_schedule("p", data)
    return {"schedule": schedule}, None, None


async def _new_pipeline(world: World, caller: str) -> Prepared:
    return {}, {**PIPELINE, "identifier": world.fresh("new-pipeline")}, None


async def _deleted_pipeline(world: World, caller: str) -> Prepared:
    pipeline = world.fresh("old-pipeline")
    await world.services.pipelines.create_pipeline("p", {**PIPELINE, "identifier": pipeline})
    return {"pipeline": pipeline}, None, None


async def _new_member(world: World, caller: str) -> Prepared:
    user = world.fresh("new-member")
    await world.services.users.create_user(user)
    return {}, {"user": user, "role": "viewer"}, None


async def _deleted_member(world: World, caller: str) -> Prepared:
    group = world.fresh("gone/group")
    await world.services.members.put_member("p", "group", group, "viewer")
    return {"member": f"group:{group}"}, None, None


async def _cancelled_run(world: World, caller: str) -> Prepared:
    return {"run": await world.pending_run()}, None, None


async def _aborted_run(world: World, caller: str) -> Prepared:
    return {"run": await world.running_run()}, None, None


async def _final_run(world: World, caller: str) -> Prepared:
    identifier = await world.pending_run()
    await world.services.runs.cancel("p", identifier)  # final: it may be re-run
    return {"run": identifier}, None, None


async def _pipeline_run(world: World, caller: str) -> Prepared:
    """A running pipeline run whose node g waits for a decision."""
    shown = await world.services.pipeline_runs.trigger("p", "gated", {}, {"type": "test"})
    return {"run": shown["identifier"], "node": "g"}, None, None


async def _deleted_worker(world: World, caller: str) -> Prepared:
    worker = world.fresh("old-worker")
    await insert_worker(world.services, worker, "worker")
    return {"worker": worker}, None, None


def _body(value: Any) -> Callable[[World, str], Awaitable[Prepared]]:
    async def prepare(world: World, caller: str) -> Prepared:
        return {}, value, None

    return prepare


_PREPARE: dict[tuple[str, str], Callable[[World, str], Awaitable[Prepared]]] = {
    ("POST", "/api/v1/me/login"): _login,
    ("POST", "/api/v1/me/logout"): _logout,
    ("POST", "/api/v1/me/password"): _password,
    ("POST", "/api/v1/me/tokens"): _new_own_token,
    ("DELETE", "/api/v1/me/tokens/{token}"): _own_token,
    ("POST", "/api/v1/users"): _new_user,
    ("PATCH", "/api/v1/users/{user}"): _body({"display_name": "Target"}),
    ("DELETE", "/api/v1/users/{user}"): _deleted_user,
    ("POST", "/api/v1/users/{user}/tokens"): _body({"description": "theirs"}),
    ("DELETE", "/api/v1/users/{user}/tokens/{token}"): _target_token,
    ("POST", "/api/v1/projects"): _new_project,
    ("PUT", "/api/v1/projects/{project}"): _body({"display_name": "P"}),
    ("PATCH", "/api/v1/projects/{project}"): _body({"display_name": "P"}),
    ("DELETE", "/api/v1/projects/{project}"): _deleted_project,
    ("POST", "/api/v1/projects/{project}/jobs"): _new_job,
    ("PUT", "/api/v1/projects/{project}/jobs/{job}"): _body(dict(JOB)),
    ("PATCH", "/api/v1/projects/{project}/jobs/{job}"): _body({"description": "changed"}),
    ("DELETE", "/api/v1/projects/{project}/jobs/{job}"): _deleted_job,
    ("POST", "/api/v1/projects/{project}/jobs/{job}/trigger"): _body({"parameters": {}}),
    ("POST", "/api/v1/projects/{project}/schedules"): _new_schedule,
    ("PUT", "/api/v1/projects/{project}/schedules/{schedule}"): _body(
        {"job": "j", "expression": "@daily"}
    ),
    ("PATCH", "/api/v1/projects/{project}/schedules/{schedule}"): _body({"display_name": "S"}),
    ("DELETE", "/api/v1/projects/{project}/schedules/{schedule}"): _deleted_schedule,
    ("POST", "/api/v1/projects/{project}/pipelines"): _new_pipeline,
    ("PUT", "/api/v1/projects/{project}/pipelines/{pipeline}"): _body(dict(PIPELINE)),
    ("PATCH", "/api/v1/projects/{project}/pipelines/{pipeline}"): _body({"description": "d"}),
    ("DELETE", "/api/v1/projects/{project}/pipelines/{pipeline}"): _deleted_pipeline,
    ("POST", "/api/v1/apply"): _body({"projects": [{"identifier": "p", "display_name": "P"}]}),
    ("POST", "/api/v1/projects/{project}/members"): _new_member,
    ("DELETE", "/api/v1/projects/{project}/members/{member:path}"): _deleted_member,
    ("POST", "/api/v1/projects/{project}/runs/{run}/cancel"): _cancelled_run,
    ("POST", "/api/v1/projects/{project}/runs/{run}/abort"): _aborted_run,
    ("POST", "/api/v1/projects/{project}/runs/{run}/rerun"): _final_run,
    ("POST", "/api/v1/projects/{project}/pipelines/{pipeline}/trigger"): _body({"parameters": {}}),
    ("GET", "/api/v1/projects/{project}/pipeline-runs/{run}"): _pipeline_run,
    ("POST", "/api/v1/projects/{project}/pipeline-runs/{run}/cancel"): _pipeline_run,
    ("POST", "/api/v1/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve"): _pipeline_run,
    ("POST", "/api/v1/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject"): _pipeline_run,
    ("PATCH", "/api/v1/workers/{worker}"): _body({"display_name": "Worker one"}),
    ("DELETE", "/api/v1/workers/{worker}"): _deleted_worker,
}


def expected_denial(roles: list[str] | None, action: Action) -> int | None:
    """None if a caller with these global roles (and an unscoped token) may use the route,
    else the status it must get (routes outside any project)."""
    if allowed(roles, action):
        return None
    return 401 if roles is None else 403


# The rules of CONTRACT section 9, written out: a member role's rights in its project, what
# each scope keeps, and what a token limited to projects may still do outside them.
MEMBER_MAY = {
    "viewer": {Action.PROJECT_READ, Action.RUN_READ},
    "operator": {
        Action.PROJECT_READ,
        Action.RUN_READ,
        Action.PROJECT_WRITE,
        Action.SECRET_WRITE,
        Action.RUN_TRIGGER,
        Action.RUN_CONTROL,
        Action.RUN_APPROVE,
    },
}
_READ_SCOPE = {a for a in Action if a.value.endswith(".read")} | {
    Action.PUBLIC,
    Action.SELF,
    Action.PROJECT_LIST,
}
_TRIGGER_SCOPE = _READ_SCOPE | {
    Action.RUN_TRIGGER,
    Action.RUN_CONTROL,
    Action.RUN_APPROVE,
    Action.WORKER_CONNECT,
}
SCOPE_MAY = {
    "read": _READ_SCOPE,
    "trigger": _TRIGGER_SCOPE,
    "write": _TRIGGER_SCOPE
    | {Action.PROJECT_WRITE, Action.PROJECT_DELETE, Action.SECRET_WRITE, Action.PROJECT_APPLY},
}
OUTSIDE_PROJECTS = {Action.SELF, Action.TOKEN_CREATE, Action.PROJECT_LIST, Action.PROJECT_APPLY}
APPLY = ("POST", "/api/v1/apply")


def may(profile: Profile, action: Action, project: str | None) -> bool:
    if action is Action.PUBLIC:
        return True
    if profile.scopes is not None and "admin" not in profile.scopes:
        if not any(action in SCOPE_MAY[scope] for scope in profile.scopes):
            return False
    if profile.projects is not None and action not in OUTSIDE_PROJECTS:
        if project not in profile.projects:
            return False
    if allowed(profile.roles, action):
        return True
    member = None if project is None else profile.q_member if project == "q" else profile.member
    return member is not None and action in MEMBER_MAY[member]


def expected(caller: str, method: str, template: str, project: str) -> int | None:
    """None if the caller may use the route (acting in `project`), else the status it gets:
    401 anonymous, 404 a project it may not see (neither read it nor its runs), else 403."""
    action = ROUTE_PERMISSIONS[(method, template)]
    if caller not in PROFILES:  # anonymous, or the disabled administrator
        return None if action is Action.PUBLIC else 401
    profile = PROFILES[caller]
    in_project = project if "{project}" in template else None
    if may(profile, action, in_project):
        if (method, template) == APPLY:  # the document's project, checked by the service
            return None if may(profile, Action.PROJECT_WRITE, "p") else 403
        return None
    if in_project is not None and not any(
        may(profile, a, in_project) for a in (Action.PROJECT_READ, Action.RUN_READ)
    ):
        return 404
    return 403


def is_api(path: str) -> bool:
    """The HTTP API and the metrics; the website's rows (sessions and CSRF) are not its part."""
    return path.startswith(f"{API}/") or path == "/metrics"


# The live event stream answers allowed callers with a stream that never ends: its access is
# checked by its own tests (tests/system/test_event_stream.py, test_events_api.py).
STREAMS = {("GET", f"{API}/events")}


def http_routes() -> list[tuple[str, str]]:
    return sorted(
        route
        for route in ROUTE_PERMISSIONS
        if route[0] != "WEBSOCKET" and is_api(route[1]) and route not in STREAMS
    )


async def test_authorization_matrix_allows_and_denies_every_route_for_every_role(
    services: Services, api: RecordingClient, make_user: MakeUser
) -> None:
    world = World(services)
    await world.build(make_user)
    mismatches: list[str] = []
    checked = 0
    for (method, template), caller in itertools.product(http_routes(), ALL_CALLERS):
        call = await world.call(method, template, caller)
        secret = call.secret or world.secrets[caller]
        headers = auth(secret) if secret else {}
        response = await api.request(method, call.path, json=call.json, headers=headers)
        denial = expected(caller, method, template, world.project)
        got = response.status_code
        unknown_project = f"no project {world.project!r}"
        is_hidden = got == 404 and response.json().get("detail") == unknown_project
        checked += 1
        if denial == 404:
            ok = is_hidden  # exactly as an unknown project answers
            wanted = f"404 {unknown_project}"
        elif denial is not None:
            ok = got == denial and "detail" in response.json()
            wanted = str(denial)
        elif (method, template) in SUCCESS:
            ok = got == SUCCESS[(method, template)]
            wanted = str(SUCCESS[(method, template)])
        else:
            ok = got not in (401, 403) and got < 500 and not is_hidden
            wanted = "not 401/403/hidden"
        if not ok:
            mismatches.append(f"{caller:>22} {method} {template}: {got}, wanted {wanted}")
    assert not mismatches, "\n".join(mismatches)
    assert checked == len(http_routes()) * len(ALL_CALLERS)
    assert not leaks(api.exchanges, await stored_secret_values(services))


# CONTRACT section 4, written out route by route: who (besides the administrator, who may do
# everything) may use each API route. Checked against the table, so that a wrong row fails here
# even though the matrix above, generated from the table, would agree with it.
ANYONE = {"anonymous", "no-role", "viewer", "auditor", "operator", "worker"}
LOGGED_IN = ANYONE - {"anonymous"}
READERS = {"viewer", "auditor", "operator"}
RUN_READERS = READERS | {"worker"}
OPERATORS = {"operator"}
USER_READERS = {"auditor"}
CONTRACT_ROLES: dict[str, set[str]] = {
    "GET /api/v1/health": ANYONE,
    "GET /api/v1/openapi.json": ANYONE,
    "GET /api/v1/docs": ANYONE,
    "POST /api/v1/me/login": ANYONE,
    "GET /api/v1/me": LOGGED_IN,
    "POST /api/v1/me/logout": LOGGED_IN,
    "POST /api/v1/me/password": LOGGED_IN,  # not with a scoped token (the matrix checks it)
    "GET /api/v1/me/tokens": LOGGED_IN,
    "POST /api/v1/me/tokens": LOGGED_IN,
    "DELETE /api/v1/me/tokens/{token}": LOGGED_IN,
    "GET /api/v1/users": USER_READERS,
    "POST /api/v1/users": set(),
    "GET /api/v1/users/{user}": USER_READERS,
    "PATCH /api/v1/users/{user}": set(),
    "DELETE /api/v1/users/{user}": set(),
    "GET /api/v1/users/{user}/tokens": USER_READERS,
    "POST /api/v1/users/{user}/tokens": set(),
    "DELETE /api/v1/users/{user}/tokens/{token}": set(),
    "GET /api/v1/projects": LOGGED_IN,  # each sees the projects they may read (none: empty)
    "POST /api/v1/projects": OPERATORS,
    "GET /api/v1/projects/{project}": READERS,
    "PUT /api/v1/projects/{project}": OPERATORS,
    "PATCH /api/v1/projects/{project}": OPERATORS,
    "DELETE /api/v1/projects/{project}": OPERATORS,
    "GET /api/v1/projects/{project}/jobs": READERS,
    "POST /api/v1/projects/{project}/jobs": OPERATORS,
    "GET /api/v1/projects/{project}/jobs/{job}": READERS,
    "PUT /api/v1/projects/{project}/jobs/{job}": OPERATORS,
    "PATCH /api/v1/projects/{project}/jobs/{job}": OPERATORS,
    "DELETE /api/v1/projects/{project}/jobs/{job}": OPERATORS,
    "POST /api/v1/projects/{project}/jobs/{job}/trigger": OPERATORS | {"worker"},
    "GET /api/v1/projects/{project}/schedules": READERS,
    "POST /api/v1/projects/{project}/schedules": OPERATORS,
    "GET /api/v1/projects/{project}/schedules/{schedule}": READERS,
    "PUT /api/v1/projects/{project}/schedules/{schedule}": OPERATORS,
    "PATCH /api/v1/projects/{project}/schedules/{schedule}": OPERATORS,
    "DELETE /api/v1/projects/{project}/schedules/{schedule}": OPERATORS,
    "GET /api/v1/projects/{project}/pipelines": READERS,
    "POST /api/v1/projects/{project}/pipelines": OPERATORS,
    "GET /api/v1/projects/{project}/pipelines/{pipeline}": READERS,
    "PUT /api/v1/projects/{project}/pipelines/{pipeline}": OPERATORS,
    "PATCH /api/v1/projects/{project}/pipelines/{pipeline}": OPERATORS,
    "DELETE /api/v1/projects/{project}/pipelines/{pipeline}": OPERATORS,
    "POST /api/v1/apply": LOGGED_IN,  # then project.write in each project of the document
    "GET /api/v1/projects/{project}/runs": RUN_READERS,
    "GET /api/v1/projects/{project}/runs/{run}": RUN_READERS,
    "GET /api/v1/projects/{project}/runs/{run}/log": RUN_READERS,
    "GET /api/v1/projects/{project}/runs/{run}/steps/{index}/log": RUN_READERS,
    "POST /api/v1/projects/{project}/runs/{run}/cancel": OPERATORS,
    "POST /api/v1/projects/{project}/runs/{run}/abort": OPERATORS,
    "POST /api/v1/projects/{project}/runs/{run}/rerun": OPERATORS | {"worker"},
    "POST /api/v1/projects/{project}/pipelines/{pipeline}/trigger": OPERATORS | {"worker"},
    "GET /api/v1/projects/{project}/pipeline-runs": RUN_READERS,
    "GET /api/v1/projects/{project}/pipeline-runs/{run}": RUN_READERS,
    "POST /api/v1/projects/{project}/pipeline-runs/{run}/cancel": OPERATORS,
    "POST /api/v1/projects/{project}/pipeline-runs/{run}/nodes/{node}/approve": OPERATORS,
    "POST /api/v1/projects/{project}/pipeline-runs/{run}/nodes/{node}/reject": OPERATORS,
    "GET /api/v1/workers": READERS,
    "GET /api/v1/workers/{worker}": READERS,
    "PATCH /api/v1/workers/{worker}": OPERATORS,
    "DELETE /api/v1/workers/{worker}": set(),
    "POST /api/v1/workers/{worker}/disconnect": OPERATORS,
    "WEBSOCKET /api/v1/workers/connect": {"worker"},
}


def test_authorization_table_grants_what_the_contract_says() -> None:
    """Routes beyond the contract's list (added later) are left to the matrix."""
    differences = []
    for route, wanted in CONTRACT_ROLES.items():
        method, path = route.split(" ", 1)
        action = ROUTE_PERMISSIONS.get((method, path))
        if action is None:
            differences.append(f"{route}: no row in the table")
            continue
        assert allowed(["administrator"], action)
        granted = {name for name in ANYONE if allowed(CALLERS[name], action)}
        if granted != wanted:
            differences.append(f"{route}: table {sorted(granted)}, contract {sorted(wanted)}")
    assert differences == []


def test_authorization_every_served_route_has_a_permission_row(services: Services) -> None:
    app = build_app(services)  # as `orchestra server` builds it: API, master and website
    # Webhook deliveries are served beside the routers (no user: web/api/webhooks.py).
    served = router_routes([*app.state.api_routers, webhook_routes.router])
    assert ("WEBSOCKET", f"{API}/workers/connect") in served
    assert [route for route in served if route not in ROUTE_PERMISSIONS] == []
    # And the table names no API route that the application does not serve (the OpenAPI
    # document and its docs page are the application's own routes, outside the routers).
    own = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    rows = [route for route in ROUTE_PERMISSIONS if is_api(route[1])]
    assert [route for route in rows if route not in {*served, *own}] == []


def test_authorization_check_table_refuses_a_route_without_a_row() -> None:
    extra = APIRouter()

    @extra.get("/api/v1/unlisted")
    async def unlisted() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="unlisted"):
        check_table([extra])


def test_authorization_check_table_accepts_routes_that_have_rows() -> None:
    listed = APIRouter()

    @listed.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {}

    check_table([listed])
