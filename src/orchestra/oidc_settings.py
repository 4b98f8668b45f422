"""The configuration of single sign-on (OpenID Connect) and of local password login, read from
ORCHESTRA_OIDC_* variables and `orchestra server` options by settings.load_settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestra.domain.permissions import check_roles
from orchestra.errors import InvalidInput

LOCAL_LOGIN_ALL = "all"
LOCAL_LOGIN_ADMINISTRATORS = "administrators"
LOCAL_LOGINS = (LOCAL_LOGIN_ALL, LOCAL_LOGIN_ADMINISTRATORS)
DEFAULT_SCOPES = ("openid", "profile", "email")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# The overrides (command-line options) this module reads.
OVERRIDES = ("oidc_issuer", "oidc_client_id", "oidc_client_secret_file")


@dataclass(frozen=True)
class OidcSettings:
    """One OpenID provider: its issuer, this instance's client there, and what its claims mean."""

    issuer: str
    client_id: str
    # Empty for a public client (PKCE alone); never given on the command line.
    client_secret: str = field(default="", repr=False)
    # What the login page's button says: "Sign in with <name>".
    name: str = ""
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    # The claim whose value is the user's identifier here, and the one holding group names.
    user_claim: str = "preferred_username"
    groups_claim: str = "groups"
    # Group name -> global roles given to the members of that group at each login.
    group_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def mapped_roles(self) -> frozenset[str]:
        """Every role the mapping may give: these follow the groups at each login."""
        return frozenset(role for roles in self.group_roles.values() for role in roles)

    def roles_for(self, groups: list[str]) -> list[str]:
        found: list[str] = []
        for group in groups:
            for role in self.group_roles.get(group, ()):
                if role not in found:
                    found.append(role)
        return found


def parse_group_roles(
    text: str, name: str = "ORCHESTRA_OIDC_GROUP_ROLES"
) -> dict[str, tuple[str, ...]]:
    """`admins=administrator,ops=operator,ops=viewer` -> {"admins": ("administrator",), ...}."""
    mapping: dict[str, list[str]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        group, sep, role = (s.strip() for s in item.partition("="))
        if not sep or not group or not role:
            raise InvalidInput(f"{name}: {item!r} is not GROUP=ROLE")
        try:
            check_roles([role])
        except InvalidInput as exc:
            raise InvalidInput(f"{name}: {exc}") from None
        roles = mapping.setdefault(group, [])
        if role not in roles:
            roles.append(role)
    return {group: tuple(roles) for group, roles in mapping.items()}


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = [s for s in text.replace(",", " ").split() if s]
    if "openid" not in scopes:
        scopes.insert(0, "openid")
    return tuple(dict.fromkeys(scopes))


def check_issuer(issuer: str) -> str:
    """An https URL (http only on this machine's loopback, for tests), without a trailing
    slash, a query or a fragment."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"ORCHESTRA_OIDC_ISSUER must be an https URL, got {issuer!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise InvalidInput("ORCHESTRA_OIDC_ISSUER must use https (http only on 127.0.0.1)")
    if parts.query or parts.fragment:
        raise InvalidInput("ORCHESTRA_OIDC_ISSUER must have no query or fragment")
    return issuer.rstrip("/")


def _secret(env: Mapping[str, str], file_override: Any) -> str:
    path = file_override or env.get("ORCHESTRA_OIDC_CLIENT_SECRET_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the OpenID client secret file {path}: {exc}") from None
    return env.get("ORCHESTRA_OIDC_CLIENT_SECRET", "").strip()


def load_oidc(
    env: Mapping[str, str], overrides: Mapping[str, Any]
) -> tuple[OidcSettings | None, str]:
    """Single sign-on's settings (None when no issuer is configured) and who may log in with
    a password: `all`, or `administrators` (the default when single sign-on is configured)."""
    issuer = overrides.get("oidc_issuer") or env.get("ORCHESTRA_OIDC_ISSUER", "")
    local_login = env.get("ORCHESTRA_LOCAL_LOGIN", "").strip().lower()
    if local_login and local_login not in LOCAL_LOGINS:
        raise InvalidInput(f"ORCHESTRA_LOCAL_LOGIN must be one of {', '.join(LOCAL_LOGINS)}")
    if not issuer:
        if local_login == LOCAL_LOGIN_ADMINISTRATORS:
            raise InvalidInput(
                "ORCHESTRA_LOCAL_LOGIN=administrators needs single sign-on (ORCHESTRA_OIDC_ISSUER)"
            )
        return None, LOCAL_LOGIN_ALL
    issuer = check_issuer(issuer)
    client_id = overrides.get("oidc_client_id") or env.get("ORCHESTRA_OIDC_CLIENT_ID", "")
    if not client_id:
        raise InvalidInput("single sign-on needs a client id (ORCHESTRA_OIDC_CLIENT_ID)")
    oidc = OidcSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=_secret(env, overrides.get("oidc_client_secret_file")),
        name=env.get("ORCHESTRA_OIDC_NAME", "").strip() or (urlsplit(issuer).hostname or issuer),
        scopes=parse_scopes(env.get("ORCHESTRA_OIDC_SCOPES", "") or " ".join(DEFAULT_SCOPES)),
        user_claim=env.get("ORCHESTRA_OIDC_USER_CLAIM", "").strip() or "preferred_username",
        groups_claim=env.get("ORCHESTRA_OIDC_GROUPS_CLAIM", "").strip() or "groups",
        group_roles=parse_group_roles(env.get("ORCHESTRA_OIDC_GROUP_ROLES", "")),
    )
    return oidc, local_login or LOCAL_LOGIN_ADMINISTRATORS
