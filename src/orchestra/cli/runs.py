"""`orchestra run trigger|list|show|log|cancel|abort|rerun|artifacts|download`. A run may be
named by a unique prefix of its identifier (cli/run_ids.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestra.cli import run_ids
from orchestra.cli.common import (
    Format,
    Output,
    ProjectArg,
    connect,
    key_values,
    show_many,
    show_one,
)
from orchestra.cli.follow import follow as follow_run
from orchestra.cli.http import Client, translated
from orchestra.client.errors import ClientError
from orchestra.errors import InvalidInput

app = typer.Typer(
    help="Trigger, follow, list, cancel, abort and re-run runs.", no_args_is_help=True
)
RunArg = Annotated[str, typer.Argument(help="the run's identifier, or a unique prefix (8+)")]
Parameters = Annotated[
    list[str] | None, typer.Option("--parameter", "-p", metavar="KEY=VALUE", help="repeat")
]
Follow = Annotated[
    bool, typer.Option("--follow", help="stream the log, retries included; exit 0 only on success")
]
COLUMNS = ("identifier", "job", "status", "worker", "creation_date")
ARTIFACT_COLUMNS = ("path", "size", "sha256")


def _follow(client: Client, project: str, run: str) -> int:
    """The log to stdout and, on stderr, each step's start, why a pending run waits, and the
    end with the failing step and its exit code (cli/follow.py); retries followed in turn."""
    return follow_run(client, project, run)


def _started(client: Client, project: str, run: dict[str, Any], follow: bool) -> None:
    """A new run: its identifier, or with `follow` its log to its end (the exit status)."""
    if not follow:
        typer.echo(run["identifier"])
        return
    typer.echo(f"run {run['identifier']} triggered", err=True)
    raise typer.Exit(_follow(client, project, run["identifier"]))


@app.command("trigger")
def trigger(
    project: ProjectArg, job: str, parameter: Parameters = None, follow: Follow = False
) -> None:
    """Trigger a run of a job; print its identifier."""
    parameters = key_values(parameter, "--parameter")
    with connect() as client:
        run = client.trigger(project, job, parameters)
        _started(client, project, run, follow)


@app.command("rerun")
def rerun(project: ProjectArg, run: RunArg, follow: Follow = False) -> None:
    """Run a final run's job again with the same parameters; print the new run's identifier."""
    with connect() as client:
        new = client.rerun(project, run_ids.run(client, project, run))
        _started(client, project, new, follow)


@app.command("list")
def list_runs(
    project: ProjectArg,
    job: Annotated[str | None, typer.Option(help="only this job's runs")] = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    worker: Annotated[str | None, typer.Option(help="only runs on this worker")] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1, help="at most this many, newest first (default 20; every run with -o json)"
        ),
    ] = None,
    output: Output = Format.text,
) -> None:
    """List runs, newest first."""
    if limit is None and output is Format.text:
        limit = 20
    with connect() as client:
        runs = client.runs(project, job=job, status=status, worker=worker)
        show_many(_first(runs, limit), output, COLUMNS)


def _first(items: Any, limit: int | None) -> Any:
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            return
        yield item


@app.command("show")
def show(project: ProjectArg, run: RunArg, output: Output = Format.json) -> None:
    """Show a run (JSON unless -o text)."""
    with connect() as client:
        show_one(client.run(project, run_ids.run(client, project, run)), output)


@app.command("log")
def log(
    project: ProjectArg,
    run: RunArg,
    follow: Annotated[
        bool, typer.Option("--follow", help="keep streaming until the run (and its retries) end")
    ] = False,
) -> None:
    """Print a run's log."""
    with connect() as client:
        identifier = run_ids.run(client, project, run)
        if follow:
            raise typer.Exit(_follow(client, project, identifier))
        with translated():
            for chunk in client.stream_log(project, identifier):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


@app.command("cancel")
def cancel(project: ProjectArg, run: RunArg, output: Output = Format.text) -> None:
    """Cancel a pending run."""
    with connect() as client:
        result = client.post(f"/projects/{project}/runs/{run_ids.run(client, project, run)}/cancel")
    if output is Format.json:
        show_one(result, output)
    else:
        typer.echo(f"run {result['identifier']} {result['status']}")


@app.command("abort")
def abort(project: ProjectArg, run: RunArg, output: Output = Format.text) -> None:
    """Abort a running run."""
    with connect() as client:
        result = client.post(f"/projects/{project}/runs/{run_ids.run(client, project, run)}/abort")
    if output is Format.json:
        show_one(result, output)
    else:
        typer.echo(f"run {result['identifier']}: abort requested")


@app.command("artifacts")
def artifacts(project: ProjectArg, run: RunArg, output: Output = Format.text) -> None:
    """List a run's stored files (path, size, SHA-256)."""
    with connect() as client:
        identifier = run_ids.run(client, project, run)
        with translated():
            show_many(client.artifacts(project, identifier), output, ARTIFACT_COLUMNS)


@app.command("download")
def download(
    project: ProjectArg,
    run: RunArg,
    path: Annotated[
        str | None, typer.Argument(help="the artifact's path (default: every artifact)")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", help="the folder to write them in, at their paths")
    ] = Path("."),
) -> None:
    """Download a run's artifacts (or one) into a folder; never writes outside it."""
    with connect() as client:
        identifier = run_ids.run(client, project, run)
        try:
            with translated():
                written = client.download(project, identifier, path, output)
        except ClientError as exc:
            raise InvalidInput(str(exc)) from None
    for file in written:
        typer.echo(str(file))
