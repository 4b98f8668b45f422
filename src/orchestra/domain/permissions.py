"""Roles and what each may do. Everything not granted here is denied."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from orchestra.errors import Forbidden, InvalidInput, Unauthenticated


class Role(StrEnum):
    VIEWER = "viewer"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    WORKER = "worker"
    ADMINISTRATOR = "administrator"


class Action(StrEnum):
    PUBLIC = "public"  # health, login, static files: anyone, even anonymous
    SELF = "self"  # the caller's own profile, own tokens listed, logout: any logged-in caller
    SELF_WRITE = "self.write"  # change one's password, revoke one's tokens: not a scoped token
    TOKEN_CREATE = "self.token"  # create one's tokens: not a scoped token (domain/access.py)
    PROJECT_LIST = "project.list"  # list the projects one may read: any logged-in caller
    PROJECT_APPLY = "project.apply"  # apply a document: project.write checked in each project
    PROJECT_READ = "project.read"
    PROJECT_WRITE = "project.write"
    # Deleting a whole project (its members and secrets with it): global operators, never a
    # project's own operator members.
    PROJECT_DELETE = "project.delete"
    RUN_READ = "run.read"
    RUN_TRIGGER = "run.trigger"
    RUN_CONTROL = "run.control"  # cancel, abort
    RUN_APPROVE = "run.approve"  # approve or reject a pipeline run's approval node
    WORKER_READ = "worker.read"
    WORKER_WRITE = "worker.write"  # enable, disable, rename, disconnect
    WORKER_DELETE = "worker.delete"
    WORKER_APPROVE = "worker.approve"  # let a new worker take runs: administrators only
    WORKER_CONNECT = "worker.connect"
    USER_READ = "user.read"
    USER_WRITE = "user.write"
    SECRET_WRITE = "secret.write"  # set and delete a project's secrets (names are read with it)
    MEMBER_WRITE = "member.write"  # add, change and remove a project's members
    ADMIN = "admin"


_READ = {Action.PROJECT_READ, Action.RUN_READ, Action.WORKER_READ}

GRANTS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset(_READ),
    Role.AUDITOR: frozenset(_READ | {Action.USER_READ}),
    Role.OPERATOR: frozenset(
        _READ
        | {
            Action.PROJECT_WRITE,
            Action.PROJECT_DELETE,
            Action.SECRET_WRITE,
            Action.RUN_TRIGGER,
            Action.RUN_CONTROL,
            Action.RUN_APPROVE,
            Action.WORKER_WRITE,
        }
    ),
    Role.WORKER: frozenset({Action.WORKER_CONNECT, Action.RUN_TRIGGER, Action.RUN_READ}),
    Role.ADMINISTRATOR: frozenset(Action),
}


def check_roles(roles: Iterable[object]) -> list[str]:
    valid = {r.value for r in Role}
    result: list[str] = []
    for role in roles:
        if role not in valid:
            raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(sorted(valid))})")
        assert isinstance(role, str)
        if role not in result:
            result.append(role)
    return result


# What every logged-in user may do whatever their roles (a token's scopes may narrow it).
_ANY_USER = frozenset(
    {
        Action.SELF,
        Action.SELF_WRITE,
        Action.TOKEN_CREATE,
        Action.PROJECT_LIST,
        Action.PROJECT_APPLY,
    }
)

# Iterating an Enum is slow (every request and worker connection asks `allowed`).
_ROLE_VALUES = frozenset(r.value for r in Role)


def allowed(roles: Iterable[str] | None, action: Action) -> bool:
    """May a caller with these roles (None: anonymous) do `action`?"""
    if action is Action.PUBLIC:
        return True
    if roles is None:
        return False
    if action in _ANY_USER:
        return True
    return any(action in GRANTS[Role(r)] for r in roles if r in _ROLE_VALUES)


def require(roles: Iterable[str] | None, action: Action) -> None:
    """Raise Unauthenticated (anonymous) or Forbidden unless `action` is granted."""
    if allowed(roles, action):
        return
    if roles is None:
        raise Unauthenticated()
    raise Forbidden(f"this needs the permission {action.value}")
