"""domain/access.py: a caller's rights from roles, memberships and the token's limits."""

from __future__ import annotations

import pytest

from orchestra.domain.access import Access, check_member_role, check_scopes, highest_roles
from orchestra.domain.permissions import Action
from orchestra.errors import InvalidInput


def test_a_member_role_grants_only_actions_inside_its_project() -> None:
    access = Access.build([], {"p": "operator", "q": "viewer"})
    assert access.may(Action.RUN_TRIGGER, "p") and access.may(Action.SECRET_WRITE, "p")
    assert not access.may(Action.RUN_TRIGGER, "q") and access.may(Action.RUN_READ, "q")
    assert not access.may(Action.RUN_TRIGGER, "r") and not access.sees("r")
    # Never a global right, never an administrator's (members), never workers'.
    for action in (Action.PROJECT_READ, Action.RUN_READ, Action.WORKER_WRITE):
        assert not access.may(action)
    assert not access.may(Action.MEMBER_WRITE, "p") and not access.may(Action.WORKER_READ, "p")
    assert access.readable_projects() == {"p", "q"}
    assert Access.build([]).readable_projects() == set()
    assert Access.build(["viewer"]).readable_projects() is None


def test_the_highest_role_of_a_project_wins() -> None:
    pairs = [("p", "viewer"), ("p", "operator"), ("p", "viewer"), ("q", "viewer"), ("r", "x")]
    assert highest_roles(pairs) == {"p": "operator", "q": "viewer"}


@pytest.mark.parametrize(
    ("scopes", "allowed", "refused"),
    [
        (["read"], {Action.PROJECT_READ, Action.USER_READ}, {Action.RUN_TRIGGER}),
        (["trigger"], {Action.RUN_CONTROL, Action.WORKER_CONNECT}, {Action.PROJECT_WRITE}),
        (["write"], {Action.PROJECT_WRITE, Action.SECRET_WRITE}, {Action.USER_WRITE}),
        (["admin"], {Action.USER_WRITE, Action.TOKEN_CREATE, Action.SELF_WRITE}, set()),
    ],
)
def test_scopes_narrow_an_administrator(
    scopes: list[str], allowed: set[Action], refused: set[Action]
) -> None:
    access = Access.build(["administrator"], scopes=scopes)
    assert all(access.may(a, "p") for a in allowed)
    assert not any(access.may(a, "p") for a in refused)
    assert access.may(Action.SELF)
    assert access.may(Action.TOKEN_CREATE) == (scopes == ["admin"])


def test_a_scope_never_adds_what_the_user_lacks() -> None:
    access = Access.build(["viewer"], {"p": "viewer"}, scopes=["admin"])
    assert access.may(Action.PROJECT_READ, "p") and not access.may(Action.PROJECT_WRITE, "p")
    assert not Access.build(["worker"], scopes=["read"]).may(Action.WORKER_CONNECT)


def test_a_token_limited_to_projects_acts_only_inside_them() -> None:
    access = Access.build(["administrator"], projects=["p"])
    assert access.may(Action.PROJECT_WRITE, "p") and access.may(Action.MEMBER_WRITE, "p")
    assert not access.may(Action.PROJECT_READ, "q") and not access.sees("q")
    for action in (Action.WORKER_READ, Action.USER_READ, Action.PROJECT_WRITE, Action.SELF_WRITE):
        assert not access.may(action)
    assert access.may(Action.SELF) and access.may(Action.TOKEN_CREATE)
    assert access.readable_projects() == {"p"}
    member = Access.build([], {"p": "viewer", "q": "viewer"}, projects=["q", "r"])
    assert member.readable_projects() == {"q"}


def test_member_roles_and_scopes_are_checked() -> None:
    assert check_member_role("operator") == "operator"
    for role in ("administrator", "Viewer", None, 1):
        with pytest.raises(InvalidInput):
            check_member_role(role)
    assert check_scopes(None) is None and check_scopes(["read", "admin"]) == ["read", "admin"]
    for scopes in ([], ["read", "read"], ["all"], "read", [None]):
        with pytest.raises(InvalidInput):
            check_scopes(scopes)
