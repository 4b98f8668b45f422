"""`orchestra run trigger|list|show|log|cancel|abort`."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from orchestra.cli.http import Client, Unreachable, key_values

app = typer.Typer(help="Trigger and follow runs.", no_args_is_help=True)
ACTIVE = ("pending", "running")
# How long `--follow` tries to reach the server again after its stream dropped, and how long
# it pauses between tries.
RECONNECT_SECONDS = 60.0
RECONNECT_PAUSE = 0.5


def _show(run: dict[str, Any]) -> None:
    typer.echo(json.dumps(run, indent=2, ensure_ascii=False))


def _follow(client: Client, project: str, run: str) -> int:
    """Stream the log to stdout until the run ends, then its retries' in turn (each attempt is
    a run of its own, made in the transaction that ends the one before); 0 if the last attempt
    succeeded, 1 if not."""
    followed = {run}
    reached = False
    while True:
        final = _follow_one(client, project, run, reached)
        reached = True
        reason = f" ({final['reason']})" if final.get("reason") else ""
        typer.echo(f"run {run} {final['status']}{reason}", err=True)
        retry = final.get("retried_by")
        if not retry or retry in followed:
            return 0 if final["status"] == "succeeded" else 1
        followed.add(retry)
        typer.echo(f"attempt {final['attempt'] + 1} is run {retry}", err=True)
        run = retry


def _follow_one(client: Client, project: str, run: str, reached: bool) -> dict[str, Any]:
    """Stream one run's log to stdout until the run ends, and return it then. Once the server
    was reached, a connection that drops (a server restarted, a proxy's 502 or idle timeout, a
    host gone silent) is opened again from the byte reached, for up to RECONNECT_SECONDS
    without an answer."""
    out = sys.stdout.buffer
    offset, lost_since = 0, None
    while True:
        start = offset
        try:
            params = {"follow": "true", "offset": str(offset)}
            with client.stream(f"/projects/{project}/runs/{run}/log", params) as response:
                reached, lost_since = True, None
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    out.flush()
                    offset += len(chunk)
            state: dict[str, Any] = client.request("GET", f"/projects/{project}/runs/{run}")
            if state["status"] not in ACTIVE:
                return state
        except Unreachable as error:
            if not reached:
                raise  # never reached: a wrong URL or a server down is said at once
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                typer.echo(f"{error}; reconnecting", err=True)
            elif now - lost_since > RECONNECT_SECONDS:
                raise
        if offset == start:
            time.sleep(RECONNECT_PAUSE)  # nothing came: do not hammer a server coming back


@app.command("trigger")
def trigger(
    project: str,
    job: str,
    parameter: Annotated[list[str] | None, typer.Option(help="KEY=VALUE; repeat")] = None,
    follow: Annotated[
        bool, typer.Option(help="stream the log, retries included; exit 0 only on success")
    ] = False,
) -> None:
    """Trigger a run of a job."""
    client = Client()
    try:
        run = client.request(
            "POST",
            f"/projects/{project}/jobs/{job}/trigger",
            json={"parameters": key_values(parameter, "--parameter")},
        )
        if not follow:
            typer.echo(run["identifier"])
            return
        typer.echo(f"run {run['identifier']} triggered", err=True)
        code = _follow(client, project, run["identifier"])
    finally:
        client.close()
    raise typer.Exit(code)


@app.command("list")
def list_runs(
    project: str,
    job: Annotated[str | None, typer.Option(help="only this job's runs")] = None,
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    worker: Annotated[str | None, typer.Option(help="only runs on this worker")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """List runs, newest first."""
    client = Client()
    params = {"job": job, "status": status, "worker": worker, "limit": limit}
    try:
        page = client.request(
            "GET", f"/projects/{project}/runs", params={k: v for k, v in params.items() if v}
        )
    finally:
        client.close()
    for run in page["items"]:
        typer.echo(
            f"{run['identifier']}  {run['job']:<20} {run['status']:<10} {run['creation_date']}"
        )


@app.command("show")
def show(project: str, run: str) -> None:
    """Show a run as JSON."""
    client = Client()
    try:
        _show(client.request("GET", f"/projects/{project}/runs/{run}"))
    finally:
        client.close()


@app.command("log")
def log(
    project: str,
    run: str,
    follow: Annotated[
        bool, typer.Option(help="keep streaming until the run (and its retries) end")
    ] = False,
) -> None:
    """Print a run's log."""
    client = Client()
    try:
        if follow:
            raise typer.Exit(_follow(client, project, run))
        with client.stream(f"/projects/{project}/runs/{run}/log", {}) as response:
            for chunk in response.iter_bytes():
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    finally:
        client.close()


@app.command("cancel")
def cancel(project: str, run: str) -> None:
    """Cancel a pending run."""
    client = Client()
    try:
        result = client.request("POST", f"/projects/{project}/runs/{run}/cancel")
    finally:
        client.close()
    typer.echo(f"run {result['identifier']} {result['status']}")


@app.command("abort")
def abort(project: str, run: str) -> None:
    """Abort a running run."""
    client = Client()
    try:
        result = client.request("POST", f"/projects/{project}/runs/{run}/abort")
    finally:
        client.close()
    typer.echo(f"run {result['identifier']}: abort requested")
