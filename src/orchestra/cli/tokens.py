"""`orchestra token list|create|delete`: your tokens, or with --user another user's (for
administrators and auditors)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from orchestra.cli.common import Format, Output, connect, show_one
from orchestra.cli.resources import delete_item, list_items
from orchestra.domain.durations import parse_duration

app = typer.Typer(help="API tokens: yours, or a user's.", no_args_is_help=True)
User = Annotated[str | None, typer.Option(help="another user's tokens (default: yours)")]
COLUMNS = ("identifier", "description", "scopes", "projects", "expiration_date", "last_used_date")


def _path(user: str | None, token: str | None = None) -> str:
    base = "/me/tokens" if user is None else f"/users/{user}/tokens"
    return base + ("" if token is None else f"/{token}")


@app.command("list")
def list_tokens(user: User = None, output: Output = Format.text) -> None:
    """List tokens (never their secrets)."""
    list_items(_path(user), output, COLUMNS)


@app.command("create")
def create(
    user: User = None,
    description: Annotated[str | None, typer.Option(help="what the token is for")] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="seconds, or a number with s, m, h or d"),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", metavar="SCOPE", help="read, trigger, write or admin; repeat"),
    ] = None,
    project: Annotated[
        list[str] | None,
        typer.Option("--project", metavar="PROJECT", help="only this project; repeat"),
    ] = None,
    output: Output = Format.text,
) -> None:
    """Create a token; its secret is printed alone on the last line (and never again)."""
    body: dict[str, object] = {"description": description, "scopes": scope, "projects": project}
    if expires_in:
        body["expiration_date"] = (datetime.now(UTC) + parse_duration(expires_in)).isoformat()
    with connect() as client:
        token = client.post(_path(user), {k: v for k, v in body.items() if v is not None})
    if output is Format.json:
        show_one(token, output)
        return
    typer.echo(
        f"token {token['identifier']} for {token['user']}, expires {token['expiration_date']}"
    )
    typer.echo(token["secret"])


@app.command("delete")
def delete(
    token: Annotated[str, typer.Argument(help="the token's identifier")], user: User = None
) -> None:
    """Revoke a token."""
    delete_item(_path(user, token), f"token {token}")
