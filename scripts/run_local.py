"""`make run`: an all-in-one instance on SQLite under ./var, with an administrator account, the
example project applied and one local worker. Prints the URL and how to log in."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestra.cli.client import load_document
from orchestra.errors import Conflict
from orchestra.services.container import Services
from orchestra.settings import load_settings
from orchestra.storage.migrate import upgrade
from orchestra.worker.sandbox import prepare as prepare_sandbox

ADMIN = "admin"


CLI_TOKEN = "make run"  # the description of the token written to cli.env
CLI_TOKEN_LIFETIME = timedelta(days=30)
CLI_TOKEN_RENEWAL = timedelta(days=1)  # a token expiring sooner than this is replaced


async def prepare(data_dir: Path, url: str) -> tuple[str | None, Path]:
    """Migrate, create the administrator (first start), apply the example and write cli.env.
    The password that logs in as the administrator, or None when it was changed since it was
    written to admin-password (it is not known here then)."""
    settings = load_settings({"data_dir": data_dir})
    upgrade(settings.resolved_database_url)
    services = Services.build(settings)
    password_file = data_dir / "admin-password"
    env_file = data_dir / "cli.env"
    try:
        if password_file.exists():
            password: str | None = password_file.read_text().strip()
            if await services.users.check_password(ADMIN, password or "") is None:
                password = None  # changed since (or the account disabled)
        else:
            password = os.environ.get("ORCHESTRA_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            try:
                await services.users.create_user(
                    ADMIN, display_name="Administrator", roles=["administrator"], password=password
                )
            except Conflict:
                await services.users.update_user(ADMIN, {"password": password})
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        await services.apply.apply(load_document(Path("examples/orchestra.yaml")))
        secret = await cli_token(services, _token_in(env_file))
        env_file.write_text(
            f"export ORCHESTRA_URL={url}\nexport ORCHESTRA_USER={ADMIN}\n"
            f"export ORCHESTRA_TOKEN={secret}\n"
        )
        env_file.chmod(0o600)
    finally:
        await services.close()
    return password, env_file


async def cli_token(services: Services, previous: str | None) -> str:
    """The secret of the administrator's CLI token: the previous one while it is valid for at
    least CLI_TOKEN_RENEWAL more, else a new one of CLI_TOKEN_LIFETIME. Every other token this
    script made is revoked, so they never pile up."""
    now = datetime.now(UTC)
    tokens, _ = await services.users.list_tokens(ADMIN, None, 500)
    kept = None
    if previous:
        caller = await services.users.authenticate(previous, ADMIN)
        if caller is not None:
            kept = next((t for t in tokens if t.identifier == caller.token), None)
            if kept is not None and (
                kept.expiration_date is not None and kept.expiration_date - now < CLI_TOKEN_RENEWAL
            ):
                kept = None
    secret = previous
    if kept is None:
        kept, secret = await services.users.create_token(ADMIN, CLI_TOKEN, now + CLI_TOKEN_LIFETIME)
    for token in tokens:
        if token.description == CLI_TOKEN and token.identifier != kept.identifier:
            await services.users.revoke_token(ADMIN, token.identifier)
    assert secret is not None
    return secret


def _token_in(env_file: Path) -> str | None:
    """The token cli.env holds, if any."""
    try:
        lines = env_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("export ORCHESTRA_TOKEN="):
            return line.removeprefix("export ORCHESTRA_TOKEN=").strip() or None
    return None


def login_line(password: str | None, password_file: Path) -> str:
    """How to log in, as `make run` prints it."""
    if password is None:
        return (
            f"Log in as '{ADMIN}' with the password you set: it was changed since the one in "
            f"{password_file}\n  (to set a new one, remove that file and start again; "
            "ORCHESTRA_ADMIN_PASSWORD chooses it)"
        )
    return f"Log in as '{ADMIN}' with password '{password}' (kept in {password_file})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="var")
    parser.add_argument("--port", default="8080")
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    # Its files (the database, cli.env with an administrator's token) are this user's alone;
    # the server keeps them so (and its local worker keeps its data in <data dir>-workers).
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    password, env_file = asyncio.run(prepare(data_dir, url))
    print(  # noqa: T201
        f"\n  Orchestra is starting at {url}\n"
        f"  {login_line(password, data_dir / 'admin-password')}\n"
        f"  For the CLI:  source {env_file} && .venv/bin/orchestra run trigger example hello "
        "--follow\n",
        flush=True,
    )
    command = [
        sys.executable,
        "-m",
        "orchestra",
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        args.port,
        "--workers",
        "1",
    ]
    sandbox = prepare_sandbox("always")
    if not sandbox.available:
        # The local worker sandboxes every step where it can (docs/isolation.md): here it
        # cannot, and says so rather than not starting at all.
        print(f"  warning: steps will not run in a sandbox: {sandbox.problem}\n", flush=True)  # noqa: T201
        command += ["--worker-sandbox", "auto"]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
