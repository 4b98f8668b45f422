"""`orchestra server`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestra.errors import InvalidInput
from orchestra.log_setup import configure_logging
from orchestra.settings import load_settings


def server(
    database: Annotated[
        str | None, typer.Option(help="sqlite:///PATH or postgresql://... (ORCHESTRA_DATABASE_URL)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="where SQLite and local workers keep data")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port)")] = 8080,
    role: Annotated[str, typer.Option(help="all, api or master")] = "all",
    workers: Annotated[int, typer.Option(min=0, max=64, help="local workers to start")] = 0,
    worker_sandbox: Annotated[
        str,
        typer.Option(
            help="the local workers' --sandbox: always (every step in a sandbox, which this "
            "server's files are hidden from), auto or never"
        ),
    ] = "always",
) -> None:
    """Serve the API, the website and the worker endpoint, and run the scheduler."""
    from orchestra.server import serve

    if worker_sandbox not in ("auto", "always", "never"):
        raise InvalidInput("--worker-sandbox must be one of auto, always, never")
    configure_logging()
    settings = load_settings(
        {"database_url": database, "data_dir": data_dir, "host": host, "port": port, "role": role}
    )
    serve(settings, local_workers=workers, worker_sandbox=worker_sandbox)
