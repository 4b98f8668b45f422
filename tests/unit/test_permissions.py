"""orchestra.domain.permissions: the roles of CONTRACT section 4."""

from __future__ import annotations

import pytest

from orchestra.domain.permissions import Action, Role, allowed, check_roles, require
from orchestra.errors import Forbidden, InvalidInput, Unauthenticated

A = Action


def test_permissions_anonymous_may_only_use_public_routes() -> None:
    assert [a for a in Action if allowed(None, a)] == [A.PUBLIC]


# What any logged-in user may do: their profile, password and tokens, listing the projects they
# may read, and applying a document (checked project by project).
ANY_USER = {A.PUBLIC, A.SELF, A.SELF_WRITE, A.TOKEN_CREATE, A.PROJECT_LIST, A.PROJECT_APPLY}


def test_permissions_a_user_without_roles_has_only_self() -> None:
    assert {a for a in Action if allowed([], a)} == ANY_USER


def test_permissions_viewer_reads_projects_runs_and_workers_only() -> None:
    granted = {a for a in Action if allowed(["viewer"], a)}
    assert granted == ANY_USER | {A.PROJECT_READ, A.RUN_READ, A.WORKER_READ}


def test_permissions_auditor_also_reads_users() -> None:
    granted = {a for a in Action if allowed(["auditor"], a)}
    assert granted == ANY_USER | {A.PROJECT_READ, A.RUN_READ, A.WORKER_READ, A.USER_READ}


def test_permissions_operator_changes_projects_runs_and_workers_but_not_users() -> None:
    granted = {a for a in Action if allowed(["operator"], a)}
    assert {A.PROJECT_WRITE, A.RUN_TRIGGER, A.RUN_CONTROL, A.WORKER_WRITE} <= granted
    assert not granted & {A.USER_READ, A.USER_WRITE, A.WORKER_CONNECT, A.ADMIN}


def test_permissions_worker_connects_triggers_and_reads_runs() -> None:
    granted = {a for a in Action if allowed(["worker"], a)}
    assert granted == ANY_USER | {A.WORKER_CONNECT, A.RUN_TRIGGER, A.RUN_READ}


def test_permissions_administrator_may_do_everything() -> None:
    assert all(allowed(["administrator"], a) for a in Action)


def test_permissions_roles_combine_and_unknown_roles_grant_nothing() -> None:
    assert allowed(["worker", "viewer"], A.WORKER_READ)
    assert not allowed(["superuser"], A.PROJECT_READ)


def test_permissions_require_raises_401_for_anonymous_and_403_for_users() -> None:
    with pytest.raises(Unauthenticated):
        require(None, A.PROJECT_READ)
    with pytest.raises(Forbidden):
        require(["viewer"], A.PROJECT_WRITE)
    require(["viewer"], A.PROJECT_READ)


def test_permissions_check_roles_refuses_unknown_roles_and_removes_duplicates() -> None:
    assert check_roles(["viewer", "viewer", "operator"]) == ["viewer", "operator"]
    with pytest.raises(InvalidInput):
        check_roles(["root"])
    assert {r.value for r in Role} == {"viewer", "auditor", "operator", "worker", "administrator"}
