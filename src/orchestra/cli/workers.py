"""`orchestra worker list|show|enable|disable|rename|approve|disconnect|delete` (`orchestra
worker` alone, with --url, starts a worker: cli/worker.py)."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from orchestra.cli import worker as agent
from orchestra.cli.common import Format, Output
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item

app = typer.Typer(
    help="With no command, start a worker (its options below); or manage workers: list, show, "
    "enable, disable, disconnect, delete.",
    invoke_without_command=True,
)
WorkerArg = Annotated[str, typer.Argument(help="the worker's identifier")]
COLUMNS = ("identifier", "display_name", "is_active", "is_enabled", "executors", "properties")


def _start(ctx: typer.Context, **options: Any) -> None:
    """`orchestra worker [OPTIONS]` starts a worker, as it always did: the group's callback
    takes the agent's options and runs it when no command follows."""
    if ctx.invoked_subcommand is None:
        agent.worker(**options)


_start.__wrapped__ = agent.worker  # type: ignore[attr-defined]  # where typer resolves hints
_start.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *inspect.signature(agent.worker, eval_str=True).parameters.values(),
    ]
)
_start.__annotations__ = {"ctx": typer.Context, **agent.worker.__annotations__}
_start.__doc__ = agent.worker.__doc__
app.callback()(_start)


def _path(worker: str | None = None) -> str:
    return "/workers" + ("" if worker is None else f"/{worker}")


@app.command("list")
def list_workers(output: Output = Format.text) -> None:
    """List the workers."""
    list_items(_path(), output, COLUMNS)


@app.command("show")
def show(worker: WorkerArg, output: Output = Format.text) -> None:
    """Show a worker."""
    show_item(_path(worker), output)


@app.command("enable")
def enable(worker: WorkerArg, output: Output = Format.text) -> None:
    """Enable a worker: it gets runs."""
    set_enabled(_path(worker), True, output, f"worker {worker}")


@app.command("disable")
def disable(worker: WorkerArg, output: Output = Format.text) -> None:
    """Disable a worker: it gets no new runs."""
    set_enabled(_path(worker), False, output, f"worker {worker}")


@app.command("rename")
def rename(worker: WorkerArg, display_name: str, output: Output = Format.text) -> None:
    """Change a worker's display name."""
    body = {"display_name": display_name}
    write_item("PATCH", _path(worker), body, output, f"worker {worker} renamed")


@app.command("approve")
def approve(worker: WorkerArg, output: Output = Format.text) -> None:
    """Approve a worker that connected for the first time."""
    write_item("PATCH", _path(worker), {"is_approved": True}, output, f"worker {worker} approved")


@app.command("disconnect")
def disconnect(worker: WorkerArg, output: Output = Format.text) -> None:
    """Close a worker's connection; it exits once its runs end."""
    done = f"worker {worker}: disconnect requested"
    write_item("POST", f"{_path(worker)}/disconnect", {}, output, done)


@app.command("delete")
def delete(worker: WorkerArg) -> None:
    """Delete a worker that is not connected."""
    delete_item(_path(worker), f"worker {worker}")
