"""`orchestra user list|show|create|update|enable|disable|delete`: administrators manage
users, auditors read them. A password is read from stdin, never from the command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestra.cli.common import FileOption, Format, Output, read_body
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item
from orchestra.errors import InvalidInput

app = typer.Typer(help="Users: list, show, create, change, delete.", no_args_is_help=True)
UserArg = Annotated[str, typer.Argument(help="the user's identifier")]
DisplayName = Annotated[str | None, typer.Option(help="full name")]
Roles = Annotated[
    list[str] | None, typer.Option("--role", metavar="ROLE", help="a role; repeat for several")
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read a password from stdin (its first line)")
]
COLUMNS = ("identifier", "display_name", "roles", "is_enabled")


def _path(user: str | None = None) -> str:
    return "/users" + ("" if user is None else f"/{user}")


def _password(password_stdin: bool) -> str | None:
    if not password_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidInput("the password read from stdin is empty")
    return password


@app.command("list")
def list_users(output: Output = Format.text) -> None:
    """List the users."""
    list_items(_path(), output, COLUMNS)


@app.command("show")
def show(user: UserArg, output: Output = Format.text) -> None:
    """Show a user."""
    show_item(_path(user), output)


@app.command("create")
def create(
    user: UserArg,
    display_name: DisplayName = None,
    role: Roles = None,
    password_stdin: PasswordStdin = False,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Create a user."""
    fields = {
        "identifier": user,
        "display_name": display_name,
        "roles": role,
        "password": _password(password_stdin),
    }
    write_item("POST", _path(), read_body(file, fields), output, f"user {user} created")


@app.command("update")
def update(
    user: UserArg,
    display_name: DisplayName = None,
    role: Roles = None,
    password_stdin: PasswordStdin = False,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Change the fields given of a user (--role replaces every role)."""
    fields = {"display_name": display_name, "roles": role, "password": _password(password_stdin)}
    write_item("PATCH", _path(user), read_body(file, fields), output, f"user {user} updated")


@app.command("enable")
def enable(user: UserArg, output: Output = Format.text) -> None:
    """Enable a user."""
    set_enabled(_path(user), True, output, f"user {user}")


@app.command("disable")
def disable(user: UserArg, output: Output = Format.text) -> None:
    """Disable a user: they authenticate as anonymous."""
    set_enabled(_path(user), False, output, f"user {user}")


@app.command("delete")
def delete(user: UserArg) -> None:
    """Delete a user."""
    delete_item(_path(user), f"user {user}")
