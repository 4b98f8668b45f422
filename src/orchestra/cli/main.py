"""The `orchestra` command. One error boundary: a failure is one line on stderr and exit
status 1 (2 for a command used wrongly), never a traceback (unless ORCHESTRA_DEBUG=1)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from orchestra import __version__
from orchestra.cli import (
    admin,
    client,
    jobs,
    notifications,
    pipelines,
    projects,
    runs,
    schedules,
    secrets,
    server,
    tokens,
    users,
    workers,
)
from orchestra.cli.help import ClickException, UsageError, make_readable
from orchestra.client import ClientError
from orchestra.errors import OrchestraError

USAGE_ERROR = 2

app = typer.Typer(
    name="orchestra",
    help="Orchestra: a self-hosted distributed job execution service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"orchestra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Orchestra: a self-hosted distributed job execution service. Client commands read
    ORCHESTRA_URL, ORCHESTRA_USER and ORCHESTRA_TOKEN."""


app.command("server")(server.server)
app.command("apply")(client.apply)
app.add_typer(admin.app, name="admin")
app.add_typer(projects.app, name="project")
app.add_typer(jobs.app, name="job")
app.add_typer(pipelines.app, name="pipeline")
app.add_typer(schedules.app, name="schedule")
app.add_typer(runs.app, name="run")
app.add_typer(workers.app, name="worker")
app.add_typer(users.app, name="user")
app.add_typer(tokens.app, name="token")
app.add_typer(secrets.app, name="secret")
app.add_typer(notifications.app, name="notification")


def main(argv: list[str] | None = None) -> None:
    try:
        command = typer.main.get_command(app)
        make_readable(command)
        code = command.main(args=argv, prog_name="orchestra", standalone_mode=False)
    except UsageError as exc:
        _usage(exc)
    except ClickException as exc:
        _fail(exc.format_message(), getattr(exc, "exit_code", 1))  # type: ignore[attr-defined]
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", code=130)
    except (OrchestraError, ClientError) as exc:
        _fail(str(exc))
    except Exception as exc:
        if os.environ.get("ORCHESTRA_DEBUG") == "1":
            raise
        _fail(f"{type(exc).__name__}: {exc}")
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage(error: Exception) -> None:
    """A command used wrongly: its help when it was given nothing, else one line; status 2."""
    ctx = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())
        raise SystemExit(USAGE_ERROR)
    hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
    _fail(f"{error.format_message()}{hint}", USAGE_ERROR)  # type: ignore[attr-defined]


def _fail(message: str, code: int = 1) -> None:
    line = " ".join(message.split()) or "failed"
    sys.stderr.write(f"orchestra: error: {line}\n")
    sys.stderr.flush()
    raise SystemExit(code)
