"""Single sign-on's settings: the issuer, the client secret from a file or the environment (never
the command line), scopes, the group-to-role mapping, and who keeps password login."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.errors import InvalidInput
from orchestra.oidc_settings import OidcSettings, parse_group_roles, parse_scopes
from orchestra.settings import load_settings

BASE = {
    "ORCHESTRA_OIDC_ISSUER": "https://id.example.com/realms/a/",
    "ORCHESTRA_OIDC_CLIENT_ID": "orc",
}


def test_off_by_default_and_password_login_for_all() -> None:
    settings = load_settings(environ={})
    assert settings.oidc is None and settings.local_login == "all"


def test_configured_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    environ = {
        **BASE,
        "ORCHESTRA_OIDC_CLIENT_SECRET_FILE": str(secret),
        "ORCHESTRA_OIDC_SCOPES": "profile,groups",
        "ORCHESTRA_OIDC_GROUP_ROLES": "admins=administrator, ops=operator,ops=viewer",
    }
    settings = load_settings(environ=environ)
    oidc = settings.oidc
    assert oidc is not None
    assert oidc.issuer == "https://id.example.com/realms/a" and oidc.client_secret == "s3cret"
    assert oidc.name == "id.example.com" and oidc.scopes == ("openid", "profile", "groups")
    assert (oidc.user_claim, oidc.groups_claim) == ("preferred_username", "groups")
    assert oidc.group_roles == {"admins": ("administrator",), "ops": ("operator", "viewer")}
    assert settings.local_login == "administrators"
    assert "s3cret" not in repr(settings)


def test_options_win_over_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from file")
    overrides = {
        "oidc_issuer": "http://127.0.0.1:5000",
        "oidc_client_id": "cli",
        "oidc_client_secret_file": secret,
    }
    environ = {**BASE, "ORCHESTRA_OIDC_CLIENT_SECRET": "from env", "ORCHESTRA_LOCAL_LOGIN": "all"}
    settings = load_settings(overrides, environ=environ)
    assert settings.oidc == OidcSettings(
        issuer="http://127.0.0.1:5000", client_id="cli", client_secret="from file", name="127.0.0.1"
    )
    assert settings.local_login == "all"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ORCHESTRA_OIDC_ISSUER": "http://id.example.com"}, "must use https"),
        ({"ORCHESTRA_OIDC_ISSUER": "id.example.com"}, "must be an https URL"),
        ({"ORCHESTRA_OIDC_ISSUER": "https://id.example.com?x=1"}, "no query"),
        ({"ORCHESTRA_OIDC_ISSUER": "https://id.example.com"}, "needs a client id"),
        ({**BASE, "ORCHESTRA_OIDC_GROUP_ROLES": "admins"}, "not GROUP=ROLE"),
        ({**BASE, "ORCHESTRA_OIDC_GROUP_ROLES": "admins=root"}, "unknown role 'root'"),
        ({**BASE, "ORCHESTRA_LOCAL_LOGIN": "nobody"}, "must be one of all, administrators"),
        ({"ORCHESTRA_LOCAL_LOGIN": "administrators"}, "needs single sign-on"),
        ({**BASE, "ORCHESTRA_OIDC_CLIENT_SECRET_FILE": "/nonexistent/x"}, "cannot read"),
    ],
)
def test_bad_settings_are_refused_clearly(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_settings(environ=environ)


def test_scopes_and_roles_of_groups() -> None:
    assert parse_scopes("email openid email") == ("email", "openid")
    oidc = OidcSettings(
        issuer="https://x", client_id="c", group_roles=parse_group_roles("a=viewer,b=operator")
    )
    assert oidc.roles_for(["b", "zzz", "a", "b"]) == ["operator", "viewer"]
    assert oidc.mapped_roles == frozenset({"viewer", "operator"})
