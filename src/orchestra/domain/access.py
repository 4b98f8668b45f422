"""What one caller may do: their global roles, their roles in projects (as members, themselves
or through their groups) and their token's scopes and projects, put together. No I/O.

A caller's rights in a project are the global grants of their roles, plus the grants of their
member role there limited to the actions inside a project, then narrowed by the token: its
scopes keep only the actions they name, and a token limited to projects acts only inside them
(reading its own profile, logging out and making narrower tokens aside).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from orchestra.domain.permissions import GRANTS, Action, Role, allowed
from orchestra.errors import InvalidInput


class MemberRole(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


class Scope(StrEnum):
    READ = "read"
    TRIGGER = "trigger"
    WRITE = "write"
    ADMIN = "admin"


# What a member role may do in its project: its global role's grants, inside a project only.
MEMBER_ACTIONS = frozenset(
    {
        Action.PROJECT_READ,
        Action.RUN_READ,
        Action.PROJECT_WRITE,
        Action.SECRET_WRITE,
        Action.RUN_TRIGGER,
        Action.RUN_CONTROL,
        Action.RUN_APPROVE,
    }
)
MEMBER_GRANTS: dict[str, frozenset[Action]] = {
    role.value: GRANTS[Role(role.value)] & MEMBER_ACTIONS for role in MemberRole
}
MAX_GROUPS = 100
_MEMBER_RANK = {MemberRole.VIEWER.value: 1, MemberRole.OPERATOR.value: 2}

# What a token limited to projects may still do outside them.
# (The projects of an applied document are checked one by one: services/apply.py.)
_OUTSIDE_PROJECTS = frozenset(
    {Action.SELF, Action.TOKEN_CREATE, Action.PROJECT_LIST, Action.PROJECT_APPLY}
)
# Seeing a project (else it answers 404, as an unknown one): reading it, or its runs.
_SEEING = (Action.PROJECT_READ, Action.RUN_READ)


def _scope_actions() -> dict[str, frozenset[Action] | None]:
    read = frozenset(
        a
        for a in Action
        if a.value.endswith(".read") or a in (Action.PUBLIC, Action.SELF, Action.PROJECT_LIST)
    )
    trigger = read | {
        Action.RUN_TRIGGER,
        Action.RUN_CONTROL,
        Action.RUN_APPROVE,
        Action.WORKER_CONNECT,
    }
    write = trigger | {
        Action.PROJECT_WRITE,
        Action.PROJECT_DELETE,
        Action.SECRET_WRITE,
        Action.PROJECT_APPLY,
    }
    return {
        Scope.READ.value: frozenset(read),
        Scope.TRIGGER.value: frozenset(trigger),
        Scope.WRITE.value: frozenset(write),
        Scope.ADMIN.value: None,  # everything the user may
    }


SCOPE_ACTIONS = _scope_actions()


def check_member_role(role: object) -> str:
    valid = [r.value for r in MemberRole]
    if role not in valid:
        raise InvalidInput(f"unknown member role {role!r} (roles: {', '.join(valid)})")
    assert isinstance(role, str)
    return role


def check_scopes(scopes: object) -> list[str] | None:
    """A token's scopes: None (all its user's rights), or a non-empty list of known scopes."""
    if scopes is None:
        return None
    if not isinstance(scopes, list) or not scopes:
        raise InvalidInput("scopes must be a non-empty list (or left out for all rights)")
    valid = [s.value for s in Scope]
    for scope in scopes:
        if scope not in valid:
            raise InvalidInput(f"unknown scope {scope!r} (scopes: {', '.join(valid)})")
    if len(set(scopes)) != len(scopes):
        raise InvalidInput("scopes must not repeat a scope")
    return list(scopes)


def check_groups(groups: object) -> list[str]:
    """A user's group names: a list of 1-200 printable characters each, without repeats."""
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise InvalidInput(f"groups must be a list of at most {MAX_GROUPS} names")
    result: list[str] = []
    for name in groups:
        name = check_group_name(name)
        if name not in result:
            result.append(name)
    return result


def check_group_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 200 or not name.isprintable():
        raise InvalidInput("a group name is 1 to 200 printable characters")
    return name


def check_token_projects(projects: object, creator: Access | None) -> list[str] | None:
    """A token's projects: None (not limited) or a non-empty list; a `creator` limited to
    projects must name some of its own, and may name only projects it may read (checking
    they exist is the caller's)."""
    if projects is None:
        if creator is not None and creator.projects is not None:
            raise InvalidInput(
                "this token is limited to projects: the new token must name some of them"
            )
        return None
    if not isinstance(projects, list) or not projects or len(projects) > 500:
        raise InvalidInput("projects must be a non-empty list of project identifiers")
    result: list[str] = []
    for project in projects:
        if not isinstance(project, str):
            raise InvalidInput("projects must be a non-empty list of project identifiers")
        if creator is not None and creator.projects is not None:
            if project not in creator.projects:
                raise InvalidInput(
                    f"project {project!r}: a token limited to projects may only make tokens"
                    " limited to some of its own"
                )
        if creator is not None and not creator.may(Action.PROJECT_READ, project):
            raise InvalidInput(f"no project {project!r}")  # as an unknown one: no hint
        if project not in result:
            result.append(project)
    return result


def highest_roles(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{project: role} from (project, role) memberships, the highest role of each project
    winning; unknown roles are ignored."""
    roles: dict[str, str] = {}
    for project, role in pairs:
        rank = _MEMBER_RANK.get(role)
        if rank is not None and rank > _MEMBER_RANK.get(roles.get(project, ""), 0):
            roles[project] = role
    return roles


@dataclass(frozen=True, eq=False)
class Access:
    """A logged-in caller's rights. `scopes` and `projects` None: not narrowed."""

    roles: frozenset[str]
    project_roles: Mapping[str, str] = field(default_factory=dict)
    scopes: frozenset[str] | None = None
    projects: frozenset[str] | None = None

    @classmethod
    def build(
        cls,
        roles: Iterable[str],
        project_roles: Mapping[str, str] | None = None,
        scopes: Iterable[str] | None = None,
        projects: Iterable[str] | None = None,
    ) -> Access:
        return cls(
            frozenset(roles),
            MappingProxyType(dict(project_roles or {})),
            None if scopes is None else frozenset(scopes),
            None if projects is None else frozenset(projects),
        )

    @property
    def is_narrowed(self) -> bool:
        """Does the token narrow its user's rights (scopes other than admin, or projects)?"""
        return self.projects is not None or not self._scoped(Action.ADMIN)

    def may(self, action: Action, project: str | None = None) -> bool:
        """May the caller do `action`, in `project` (None: globally, outside any project)?"""
        if action is Action.PUBLIC:
            return True
        if not self._scoped(action):
            return False
        if self.projects is not None and action not in _OUTSIDE_PROJECTS:
            if project is None or project not in self.projects:
                return False
        if allowed(self.roles, action):
            return True
        if project is None or action not in MEMBER_ACTIONS:
            return False
        role = self.project_roles.get(project)
        return role is not None and action in MEMBER_GRANTS[role]

    def sees(self, project: str) -> bool:
        """Does the project exist for the caller? If not, it answers 404 as an unknown one."""
        return any(self.may(action, project) for action in _SEEING)

    def readable_projects(self) -> frozenset[str] | None:
        """The projects the caller may read (PROJECT_READ); None: every project."""
        if not self._scoped(Action.PROJECT_READ):
            return frozenset()
        if allowed(self.roles, Action.PROJECT_READ):
            readable = None
        else:
            readable = frozenset(
                p
                for p, role in self.project_roles.items()
                if Action.PROJECT_READ in MEMBER_GRANTS[role]
            )
        if self.projects is None:
            return readable
        return self.projects if readable is None else readable & self.projects

    def _scoped(self, action: Action) -> bool:
        if self.scopes is None:
            return True
        for scope in self.scopes:
            actions = SCOPE_ACTIONS.get(scope, frozenset())
            if actions is None or action in actions:
                return True
        return False
