"""`orchestra admin`: bootstrap commands that work directly on the database."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestra.cli.stray_database import refuse_stray_database
from orchestra.domain.durations import parse_duration
from orchestra.settings import load_settings

if TYPE_CHECKING:
    from orchestra.services.container import Services
    from orchestra.services.key_rotation import RotationReport

app = typer.Typer(help="Bootstrap commands working directly on the database.", no_args_is_help=True)

Database = Annotated[
    str | None, typer.Option(help="sqlite:///PATH or postgresql://... (ORCHESTRA_DATABASE_URL)")
]
DataDir = Annotated[Path | None, typer.Option(help="the server's data directory")]


def _services(database: str | None, data_dir: Path | None) -> Services:
    # Imported here: the database stack costs a second to import, which commands that only
    # talk HTTP (`orchestra run ...`) should not pay.
    from orchestra.services.container import Services
    from orchestra.services.key_check import verify_key
    from orchestra.services.keyring import load_keyring
    from orchestra.storage.migrate import upgrade

    settings = load_settings({"database_url": database, "data_dir": data_dir})
    refuse_stray_database(database, data_dir, settings.resolved_database_url)
    upgrade(settings.resolved_database_url)
    keyring = load_keyring(settings)
    verify_key(settings.resolved_database_url, keyring)
    return Services.build(settings, keyring=keyring)


@app.command("migrate")
def migrate(database: Database = None, data_dir: DataDir = None) -> None:
    """Bring the database schema up to date."""
    from orchestra.storage.migrate import upgrade

    settings = load_settings({"database_url": database, "data_dir": data_dir})
    refuse_stray_database(database, data_dir, settings.resolved_database_url)
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


KeyFile = Annotated[
    Path | None,
    typer.Option(help="the instance key file (default <data dir>/secret.key)"),
]


@app.command("rotate-key")
def rotate_key(
    database: Database = None, data_dir: DataDir = None, secret_key_file: KeyFile = None
) -> None:
    """Make a new instance key the current one and re-encrypt every secret with it; stop the
    servers first (docs/security.md). Run it again if it was interrupted."""
    from orchestra.services import keyring as keys
    from orchestra.services.key_check import verify_key
    from orchestra.services.key_rotation import compact_sqlite, reencrypt_all
    from orchestra.storage.engine import Database as Engine
    from orchestra.storage.migrate import upgrade

    settings = load_settings(
        {"database_url": database, "data_dir": data_dir, "secret_key_file": secret_key_file}
    )
    url = settings.resolved_database_url
    refuse_stray_database(database, data_dir, url)
    upgrade(url)
    path = keys.key_file_path(settings)
    from_environment = bool(settings.secret_key)
    if from_environment:
        ring = keys.Keyring(keys.keys_from_environment(settings.secret_key))
    elif path.exists():
        ring = keys.Keyring(keys.read_key_file(path))
    else:
        raise keys.KeyringError(f"no key file {path} and no {keys.ENVIRONMENT_VARIABLE}")
    verify_key(url, ring)  # the ring reads what the database holds (or it holds nothing yet)
    if len(ring.keys) == 1:
        ring = keys.Keyring([keys.new_key(), *ring.keys])
        if from_environment:
            new, old = (keys.encode_key(k) for k in ring.keys)
            typer.echo(f"new key {ring.current_id}: {new}")
            typer.echo(
                f"if this stops before the end, run it again with "
                f"{keys.ENVIRONMENT_VARIABLE}={new},{old}"
            )
        else:
            keys.write_key_file(path, ring.keys)
            typer.echo(f"new key {ring.current_id} written to {path}, old key kept meanwhile")
    else:
        typer.echo(f"resuming the rotation to key {ring.current_id}")

    async def run() -> RotationReport:
        engine = Engine(url)
        try:
            return await reencrypt_all(engine, ring)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    for table, count in report.reencrypted.items():
        typer.echo(f"{table}: {count} values re-encrypted")
    if not report.complete:
        unreadable = ", ".join(f"{t}: {n}" for t, n in report.unreadable.items() if n)
        raise keys.KeyringError(
            f"values no key could read were left as they are ({unreadable}); the old keys are kept"
        )
    if compact_sqlite(url):
        typer.echo("database file rewritten: no copy of an old value is left in it")
    if from_environment:
        typer.echo(
            f"done: set {keys.ENVIRONMENT_VARIABLE} to the new key on every server, "
            "then restart them"
        )
        typer.echo(keys.encode_key(ring.keys[0]))
    else:
        keys.write_key_file(path, ring.keys[:1])
        old = ", ".join(ring.key_ids[1:])
        typer.echo(f"done: {path} holds key {ring.current_id} alone (dropped {old})")
