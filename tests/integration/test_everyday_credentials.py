"""Credentials of everyday use (issue 24): `make run` prints a password that works (or says it
was changed) and reuses its CLI token instead of adding one at every start; a login opens a
short session that is not listed among the API tokens."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from orchestra.services.container import Services
from orchestra.settings import load_settings
from tests.helpers import RecordingClient, auth

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_local.py"
URL = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def run_local() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_local", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _tokens(data_dir: Path) -> list[tuple[str, str, datetime | None]]:
    """The administrator's API tokens: (identifier, description, expiration)."""
    services = Services.build(load_settings({"data_dir": data_dir}))
    try:
        tokens, _ = await services.users.list_tokens("admin", None, 500)
        return [(t.identifier, t.description, t.expiration_date) for t in tokens]
    finally:
        await services.close()


async def _change_password(data_dir: Path, password: str) -> None:
    services = Services.build(load_settings({"data_dir": data_dir}))
    try:
        await services.users.update_user("admin", {"password": password})
    finally:
        await services.close()


def test_make_run_reuses_its_cli_token_and_says_when_the_password_changed(
    run_local: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(SCRIPT.parents[1])  # the example document is read from the checkout
    monkeypatch.delenv("ORCHESTRA_ADMIN_PASSWORD", raising=False)
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o700)
    env_file = data_dir / "cli.env"

    password, _ = asyncio.run(run_local.prepare(data_dir, URL))
    assert password and (data_dir / "admin-password").read_text().strip() == password
    first_env = env_file.read_text()
    (token,) = asyncio.run(_tokens(data_dir))
    assert token[1] == "make run"
    assert token[2] is not None and token[2] - datetime.now(UTC) <= timedelta(days=31)

    # A second start: the same token, still alone.
    again, _ = asyncio.run(run_local.prepare(data_dir, URL))
    assert again == password
    assert env_file.read_text() == first_env
    assert asyncio.run(_tokens(data_dir)) == [token]

    # cli.env lost its token (or holds a revoked one): a new one replaces the old.
    env_file.write_text("export ORCHESTRA_TOKEN=orc_not-a-token\n")
    asyncio.run(run_local.prepare(data_dir, URL))
    (replaced,) = asyncio.run(_tokens(data_dir))
    assert replaced[0] != token[0]
    assert "orc_not-a-token" not in env_file.read_text()

    # The password changed since: not the old one printed, but that it changed.
    asyncio.run(_change_password(data_dir, "a new password 42"))
    changed, _ = asyncio.run(run_local.prepare(data_dir, URL))
    assert changed is None
    line = run_local.login_line(changed, data_dir / "admin-password")
    assert password not in line
    assert "changed" in line
    assert password in run_local.login_line(password, data_dir / "admin-password")


async def test_a_login_is_a_short_session_not_listed_among_the_api_tokens(
    services: Services, api: RecordingClient
) -> None:
    await services.users.create_user("alice", roles=["viewer"], password="alice password 7")
    token, secret = await services.users.create_token("alice", "ci", None)
    login = await api.post(
        "/api/v1/me/login", json={"user": "alice", "password": "alice password 7"}
    )
    assert login.status_code == 200
    session = login.json()
    expires = datetime.fromisoformat(session["expiration_date"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) <= timedelta(hours=12)
    for credential in (secret, session["token"]):
        listed = await api.get("/api/v1/me/tokens", headers=auth(credential))
        assert listed.status_code == 200
        assert [t["identifier"] for t in listed.json()["items"]] == [token.identifier]
