"""`orchestra secret list|set|delete`: a project's secrets over the API. A value is read from
stdin, never from the command line (which `ps` and shell histories show)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestra.cli.http import Client
from orchestra.errors import InvalidInput

app = typer.Typer(
    help="Set and delete a project's secrets (values are never shown).", no_args_is_help=True
)


@app.command("list")
def list_secrets(project: str) -> None:
    """List a project's secrets: names and dates."""
    client = Client()
    try:
        cursor = None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = client.request("GET", f"/projects/{project}/secrets", params=params)
            for secret in page["items"]:
                typer.echo(f"{secret['name']:<40} updated {secret['update_date']}")
            cursor = page["next_cursor"]
            if not cursor:
                return
    finally:
        client.close()


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
        typer.echo(f"Value of {name} (then Ctrl-D):", err=True)
    value = sys.stdin.read()
    if not keep_newline:
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise InvalidInput("the value read from stdin is empty")
    client = Client()
    try:
        client.request("PUT", f"/projects/{project}/secrets/{name}", json={"value": value})
    finally:
        client.close()
    typer.echo(f"secret {name} of project {project} set")


@app.command("delete")
def delete_secret(project: str, name: str) -> None:
    """Delete a secret."""
    client = Client()
    try:
        client.request("DELETE", f"/projects/{project}/secrets/{name}")
    finally:
        client.close()
    typer.echo(f"secret {name} of project {project} deleted")
