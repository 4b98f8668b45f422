"""`make run`: an all-in-one instance on SQLite under ./var, with an administrator account, the
example project applied and one local worker. Prints the URL and how to log in."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

from orchestra.cli.client import load_document
from orchestra.errors import Conflict
from orchestra.services.container import Services
from orchestra.settings import load_settings
from orchestra.storage.migrate import upgrade
from orchestra.worker.sandbox import prepare as prepare_sandbox

ADMIN = "admin"


async def prepare(data_dir: Path, url: str) -> tuple[str, Path]:
    settings = load_settings({"data_dir": data_dir})
    upgrade(settings.resolved_database_url)
    services = Services.build(settings)
    password_file = data_dir / "admin-password"
    try:
        if password_file.exists():
            password = password_file.read_text().strip()
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
        _token, secret = await services.users.create_token(ADMIN, "make run", None)
        env_file = data_dir / "cli.env"
        env_file.write_text(
            f"export ORCHESTRA_URL={url}\nexport ORCHESTRA_USER={ADMIN}\n"
            f"export ORCHESTRA_TOKEN={secret}\n"
        )
        env_file.chmod(0o600)
    finally:
        await services.close()
    return password, env_file


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
        f"  Log in as '{ADMIN}' with password '{password}' (kept in {data_dir}/admin-password)\n"
        f"  For the CLI:  source {env_file} && .venv/bin/orchestra run trigger example hello "
        "--follow\n",
        flush=True,
    )
    command = [sys.executable, "-m", "orchestra", "server", "--data-dir", str(data_dir),
               "--port", args.port, "--workers", "1"]
    sandbox = prepare_sandbox("always")
    if not sandbox.available:
        # The local worker sandboxes every step where it can (docs/isolation.md): here it
        # cannot, and says so rather than not starting at all.
        print(f"  warning: steps will not run in a sandbox: {sandbox.problem}\n", flush=True)  # noqa: T201
        command += ["--worker-sandbox", "auto"]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
