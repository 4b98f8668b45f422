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
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            help="ADDR,...: the reverse proxies (IP addresses or networks) whose X-Forwarded-For "
            "and X-Forwarded-Proto are believed; none by default (ORCHESTRA_TRUSTED_PROXIES)"
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=0, max=64, help="local workers to start")] = 0,
    require_worker_approval: Annotated[
        bool | None,
        typer.Option(
            "--require-worker-approval",
            help="new workers take no run until an administrator approves them "
            "(ORCHESTRA_REQUIRE_WORKER_APPROVAL)",
        ),
    ] = None,
    secret_key_file: Annotated[
        Path | None,
        typer.Option(
            help="the instance key file (default <data dir>/secret.key, created at the first "
            "start; ORCHESTRA_SECRET_KEY instead)"
        ),
    ] = None,
    oidc_issuer: Annotated[
        str | None, typer.Option(help="single sign-on's OpenID issuer URL (ORCHESTRA_OIDC_ISSUER)")
    ] = None,
    oidc_client_id: Annotated[
        str | None, typer.Option(help="this instance's client id there (ORCHESTRA_OIDC_CLIENT_ID)")
    ] = None,
    oidc_client_secret_file: Annotated[
        Path | None,
        typer.Option(help="a file holding the client secret (ORCHESTRA_OIDC_CLIENT_SECRET_FILE)"),
    ] = None,
    worker_sandbox: Annotated[
        str,
        typer.Option(
            help="the local workers' --sandbox: always (every step in a sandbox, which this "
            "server's files are hidden from), auto or never"
        ),
    ] = "always",
    worker_data_dir: Annotated[
        Path | None,
        typer.Option(
            help="where local workers keep journals and workspaces (default: <data dir>-workers, "
            "beside the data directory, never in it)"
        ),
    ] = None,
    worker_run_as: Annotated[
        str | None,
        typer.Option(
            help="the OS user local workers run their steps as (the server must run as root); "
            "default: the server's own user"
        ),
    ] = None,
) -> None:
    """Serve the API, the website and the worker endpoint, and run the scheduler."""
    from orchestra.server import serve

    if worker_sandbox not in ("auto", "always", "never"):
        raise InvalidInput("--worker-sandbox must be one of auto, always, never")
    configure_logging()
    settings = load_settings(
        {
            "database_url": database,
            "data_dir": data_dir,
            "host": host,
            "port": port,
            "role": role,
            "trusted_proxies": trusted_proxies,
            "require_worker_approval": require_worker_approval,
            "secret_key_file": secret_key_file,
            "oidc_issuer": oidc_issuer,
            "oidc_client_id": oidc_client_id,
            "oidc_client_secret_file": oidc_client_secret_file,
        }
    )
    serve(
        settings,
        local_workers=workers,
        worker_sandbox=worker_sandbox,
        worker_data_dir=worker_data_dir,
        worker_run_as=worker_run_as,
    )
