"""The `orchestra` command. One error boundary: a failure is one line on stderr and a non-zero
exit, never a traceback (unless ORCHESTRA_DEBUG=1)."""

from __future__ import annotations

import os
import sys

import typer

from orchestra.cli import admin, client, runs, secrets, server, worker
from orchestra.errors import OrchestraError

app = typer.Typer(
    name="orchestra",
    help="Orchestra: a self-hosted distributed job execution service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("server")(server.server)
app.command("worker")(worker.worker)
app.command("apply")(client.apply)
app.add_typer(admin.app, name="admin")
app.add_typer(runs.app, name="run")
app.add_typer(secrets.app, name="secret")


def main() -> None:
    try:
        app()
    except OrchestraError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    except Exception as exc:
        if os.environ.get("ORCHESTRA_DEBUG") == "1":
            raise
        _fail(f"{type(exc).__name__}: {exc}")


def _fail(message: str, code: int = 1) -> None:
    line = " ".join(message.split()) or "failed"
    sys.stderr.write(f"orchestra: error: {line}\n")
    raise SystemExit(code)
