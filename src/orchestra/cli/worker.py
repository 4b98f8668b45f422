"""`orchestra worker`."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestra.cli.http import key_values
from orchestra.cli.worker_token import TOKEN_VARIABLE, read_token, without_token_in_sight
from orchestra.errors import InvalidInput
from orchestra.log_setup import configure_logging

SANDBOX_MODES = ("auto", "always", "never")


def worker(
    url: Annotated[
        str | None, typer.Option(help="the master's URL (ORCHESTRA_URL); repeat for several")
    ] = None,
    user: Annotated[str | None, typer.Option(help="the worker's user (ORCHESTRA_USER)")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="a token of that user, or - to read it from standard input; every user of "
            "this machine sees it in ps while the worker starts: prefer --token-file"
        ),
    ] = None,
    token_file: Annotated[
        str | None, typer.Option(help="a file holding the token (- for standard input)")
    ] = None,
    identifier: Annotated[
        str | None, typer.Option(help="the worker identifier (default: host name)")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="the name shown in the website")] = None,
    property: Annotated[list[str] | None, typer.Option(help="KEY=VALUE; repeat")] = None,
    executors: Annotated[int, typer.Option(min=1, max=256, help="runs at the same time")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="journal and workspaces")] = None,
    sandbox: Annotated[
        str,
        typer.Option(
            help="auto: run the steps of jobs that ask in a sandbox (bubblewrap); always: "
            "every step; never: none (docs/isolation.md)"
        ),
    ] = "auto",
    hide: Annotated[
        list[Path] | None,
        typer.Option(help="a path sandboxed steps must not see (besides --data-dir); repeat"),
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option(
            help="run every step as this OS user (its uid, group and groups), not the "
            "worker's; the worker must run as root"
        ),
    ] = None,
) -> None:
    """Connect to a master and run what it assigns."""
    from orchestra.worker.app import WorkerOptions, run_worker
    from orchestra.worker.run_as import resolve_run_as

    if token is not None and token != "-":
        sys.stderr.write(
            "orchestra: warning: --token shows the token to every user of this machine (ps); "
            "use --token-file FILE or --token - (standard input)\n"
        )
    configure_logging()
    if sandbox not in SANDBOX_MODES:
        raise InvalidInput(f"--sandbox must be one of {', '.join(SANDBOX_MODES)}")
    steps_user = None if run_as is None else resolve_run_as(run_as)
    properties = key_values(property, "--property")
    if "sandbox" in properties:
        raise InvalidInput(
            "the sandbox property is the worker's own (sandbox=true when bubblewrap works "
            "here): use --sandbox auto|always|never"
        )
    secret, shown = read_token(token, None if token_file is None else Path(token_file), os.environ)
    if shown and secret:
        # Given where other processes can read it: start again with it on a pipe instead.
        without_token_in_sight(secret)
    url = url or os.environ.get("ORCHESTRA_URL")
    user = user or os.environ.get("ORCHESTRA_USER")
    if not url or not user or not secret:
        raise InvalidInput(
            f"--url, --user and --token or --token-file (or ORCHESTRA_URL, ORCHESTRA_USER, "
            f"{TOKEN_VARIABLE}) are needed"
        )
    identifier = identifier or socket.gethostname().split(".")[0]
    hidden = [p.resolve() for p in hide or ()]
    if token_file is not None and Path(token_file).is_file():
        hidden.append(Path(token_file).resolve())  # sandboxed steps do not see it
    options = WorkerOptions(
        urls=[u.strip() for u in url.split(",") if u.strip()],
        user=user,
        token=secret,
        identifier=identifier,
        display_name=display_name or identifier,
        properties=properties,
        executors=executors,
        data_dir=(data_dir or Path("var") / "worker" / identifier).resolve(),
        sandbox=sandbox,
        hidden=hidden,
        run_as=steps_user,
    )
    run_worker(options)
