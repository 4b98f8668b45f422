"""`orchestra secret list|set|delete`: a project's secrets over the API. A value is read from
stdin, never from the command line (which `ps` and shell histories show)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from orchestra.cli.common import Format, Output, ProjectArg, connect, print_json
from orchestra.errors import InvalidInput

app = typer.Typer(
    help="Set and delete a project's secrets (values are never shown).", no_args_is_help=True
)


@app.command("list")
def list_secrets(project: ProjectArg, output: Output = Format.text) -> None:
    """List a project's secrets: names and dates."""
    with connect() as client:
        secrets = client.items(f"/projects/{project}/secrets")
        if output is Format.json:
            print_json(list(secrets))
            return
        for secret in secrets:
            typer.echo(f"{secret['name']:<40} updated {secret['update_date']}")


@app.command("set")
def set_secret(
    project: str,
    name: str,
    keep_newline: Annotated[
        bool, typer.Option(help="keep the value's final newline (dropped by default)")
    ] = False,
) -> None:
    """Set a secret to the value read from stdin (created, or replaced)."""
    if sys.stdin.isatty():
        # Typed at a terminal: not echoed, one line (a multi-line value comes on a pipe).
        value = getpass.getpass(f"Value of {name}: ")
    else:
        value = sys.stdin.read()
    if not keep_newline:
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise InvalidInput("the value read from stdin is empty")
    with connect() as client:
        client.put(f"/projects/{project}/secrets/{name}", {"value": value})
    typer.echo(f"secret {name} of project {project} set")


@app.command("delete")
def delete_secret(project: str, name: str) -> None:
    """Delete a secret."""
    with connect() as client:
        client.delete(f"/projects/{project}/secrets/{name}")
    typer.echo(f"secret {name} of project {project} deleted")
