"""`orchestra admin`: bootstrap commands that work directly on the database."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestra.domain.durations import parse_duration
from orchestra.settings import load_settings

if TYPE_CHECKING:
    from orchestra.services.container import Services

app = typer.Typer(help="Bootstrap commands working directly on the database.", no_args_is_help=True)

Database = Annotated[
    str | None, typer.Option(help="sqlite:///PATH or postgresql://... (ORCHESTRA_DATABASE_URL)")
]
DataDir = Annotated[Path | None, typer.Option(help="the server's data directory")]


def _services(database: str | None, data_dir: Path | None) -> Services:
    # Imported here: the database stack costs a second to import, which commands that only
    # talk HTTP (`orchestra run ...`) should not pay.
    from orchestra.services.container import Services
    from orchestra.storage.migrate import upgrade

    settings = load_settings({"database_url": database, "data_dir": data_dir})
    upgrade(settings.resolved_database_url)
    return Services.build(settings)


@app.command("migrate")
def migrate(database: Database = None, data_dir: DataDir = None) -> None:
    """Bring the database schema up to date."""
    from orchestra.storage.migrate import upgrade

    settings = load_settings({"database_url": database, "data_dir": data_dir})
    upgrade(settings.resolved_database_url)
    typer.echo("database is up to date")


@app.command("create-user")
def create_user(
    identifier: str,
    display_name: Annotated[str | None, typer.Option(help="full name")] = None,
    role: Annotated[list[str] | None, typer.Option(help="a role; repeat for several")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    database: Database = None,
    data_dir: DataDir = None,
) -> None:
    """Create a user (with a password read from stdin, or a prompt if it is a terminal)."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password (empty for none): ") or None

    async def run() -> None:
        services = _services(database, data_dir)
        try:
            user = await services.users.create_user(
                identifier, display_name=display_name, roles=role or [], password=password
            )
        finally:
            await services.close()
        typer.echo(f"created user {user.identifier} with roles {', '.join(user.roles) or 'none'}")

    asyncio.run(run())


@app.command("create-token")
def create_token(
    user: str,
    description: Annotated[str | None, typer.Option(help="what the token is for")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="seconds, or a number with s, m, h or d (default 365d)")
    ] = None,
    database: Database = None,
    data_dir: DataDir = None,
) -> None:
    """Create a token; its secret is printed alone on the last line."""
    lifetime = parse_duration(expires_in) if expires_in else None

    async def run() -> None:
        services = _services(database, data_dir)
        try:
            expiration = services.clock.now() + lifetime if lifetime else None
            token, secret = await services.users.create_token(user, description, expiration)
        finally:
            await services.close()
        typer.echo(f"token {token.identifier} for {token.user}, expires {token.expiration_date}")
        typer.echo(secret)

    asyncio.run(run())
