"""`orchestra worker`."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from orchestra.cli.http import key_values
from orchestra.errors import InvalidInput
from orchestra.log_setup import configure_logging


def worker(
    url: Annotated[
        str | None, typer.Option(help="the master's URL (ORCHESTRA_URL); repeat for several")
    ] = None,
    user: Annotated[str | None, typer.Option(help="the worker's user (ORCHESTRA_USER)")] = None,
    token: Annotated[
        str | None, typer.Option(help="a token of that user (ORCHESTRA_TOKEN)")
    ] = None,
    identifier: Annotated[
        str | None, typer.Option(help="the worker identifier (default: host name)")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="the name shown in the website")] = None,
    property: Annotated[list[str] | None, typer.Option(help="KEY=VALUE; repeat")] = None,
    executors: Annotated[int, typer.Option(min=1, max=256, help="runs at the same time")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="journal and workspaces")] = None,
) -> None:
    """Connect to a master and run what it assigns."""
    from orchestra.worker.app import WorkerOptions, run_worker

    configure_logging()
    properties = key_values(property, "--property")
    url = url or os.environ.get("ORCHESTRA_URL")
    user = user or os.environ.get("ORCHESTRA_USER")
    token = token or os.environ.get("ORCHESTRA_TOKEN")
    if not url or not user or not token:
        raise InvalidInput("--url, --user and --token (or ORCHESTRA_URL, _USER, _TOKEN) are needed")
    identifier = identifier or socket.gethostname().split(".")[0]
    options = WorkerOptions(
        urls=[u.strip() for u in url.split(",") if u.strip()],
        user=user,
        token=token,
        identifier=identifier,
        display_name=display_name or identifier,
        properties=properties,
        executors=executors,
        data_dir=(data_dir or Path("var") / "worker" / identifier).resolve(),
    )
    run_worker(options)
