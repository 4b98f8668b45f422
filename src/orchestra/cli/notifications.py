"""`orchestra notification list|show|create|update|enable|disable|delete|deliveries`: a
project's notifications over the API. A secret is read from stdin (--secret-stdin), never
from the command line (which `ps` and shell histories show)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer

from orchestra.cli.common import FileOption, Format, Output, ProjectArg, read_body
from orchestra.cli.resources import delete_item, list_items, set_enabled, show_item, write_item
from orchestra.errors import InvalidInput

app = typer.Typer(
    help="Notifications of a project: where run and pipeline events are sent.",
    no_args_is_help=True,
)
NotificationArg = Annotated[str, typer.Argument(help="the notification's identifier")]
Events = Annotated[
    list[str] | None,
    typer.Option("--event", "-e", help="run.failed, run.fixed, ... (repeat)"),
]
Jobs = Annotated[list[str] | None, typer.Option("--job", help="only this job's runs (repeat)")]
Pipelines = Annotated[
    list[str] | None, typer.Option("--pipeline", help="only this pipeline's runs (repeat)")
]
Url = Annotated[str | None, typer.Option(help="where events are POSTed (http or https)")]
Email = Annotated[str | None, typer.Option(help="send events by e-mail to this address instead")]
BodyFormat = Annotated[str | None, typer.Option("--format", help="json (default) or slack")]
SecretStdin = Annotated[
    bool, typer.Option("--secret-stdin", help="read the signing secret from stdin")
]
COLUMNS = ("identifier", "events", "url", "email", "format", "is_enabled")
DELIVERY_COLUMNS = ("identifier", "type", "status", "attempts", "last_status_code", "last_error")


def _path(project: str, notification: str | None = None) -> str:
    return f"/projects/{project}/notifications" + (
        "" if notification is None else f"/{notification}"
    )


def _secret() -> str:
    if sys.stdin.isatty():
        value = getpass.getpass("Secret: ")
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        raise InvalidInput("the secret read from stdin is empty")
    return value


def _fields(
    event: list[str] | None,
    job: list[str] | None,
    pipeline: list[str] | None,
    url: str | None,
    email: str | None,
    body_format: str | None,
    secret_stdin: bool,
) -> dict[str, Any]:
    return {
        "events": event or None,
        "jobs": job or None,
        "pipelines": pipeline or None,
        "url": url,
        "email": email,
        "format": body_format,
        "secret": _secret() if secret_stdin else None,
    }


@app.command("list")
def list_notifications(project: ProjectArg, output: Output = Format.text) -> None:
    """List a project's notifications."""
    list_items(_path(project), output, COLUMNS)


@app.command("show")
def show(project: ProjectArg, notification: NotificationArg, output: Output = Format.text) -> None:
    """Show a notification (its secret as ***)."""
    show_item(_path(project, notification), output)


@app.command("create")
def create(
    project: ProjectArg,
    notification: NotificationArg,
    event: Events = None,
    job: Jobs = None,
    pipeline: Pipelines = None,
    url: Url = None,
    email: Email = None,
    body_format: BodyFormat = None,
    secret_stdin: SecretStdin = False,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Create a notification."""
    fields = _fields(event, job, pipeline, url, email, body_format, secret_stdin)
    body = read_body(file, {"identifier": notification, **fields})
    write_item("POST", _path(project), body, output, f"notification {notification} created")


@app.command("update")
def update(
    project: ProjectArg,
    notification: NotificationArg,
    event: Events = None,
    job: Jobs = None,
    pipeline: Pipelines = None,
    url: Url = None,
    email: Email = None,
    body_format: BodyFormat = None,
    secret_stdin: SecretStdin = False,
    file: FileOption = None,
    output: Output = Format.text,
) -> None:
    """Change the fields given of a notification (PATCH)."""
    fields = _fields(event, job, pipeline, url, email, body_format, secret_stdin)
    body = read_body(file, fields)
    path = _path(project, notification)
    write_item("PATCH", path, body, output, f"notification {notification} updated")


@app.command("enable")
def enable(
    project: ProjectArg, notification: NotificationArg, output: Output = Format.text
) -> None:
    """Enable a notification."""
    set_enabled(_path(project, notification), True, output, f"notification {notification}")


@app.command("disable")
def disable(
    project: ProjectArg, notification: NotificationArg, output: Output = Format.text
) -> None:
    """Disable a notification: no new event is sent, and what waits is given up."""
    set_enabled(_path(project, notification), False, output, f"notification {notification}")


@app.command("delete")
def delete(project: ProjectArg, notification: NotificationArg) -> None:
    """Delete a notification and its deliveries."""
    delete_item(_path(project, notification), f"notification {notification}")


@app.command("deliveries")
def deliveries(
    project: ProjectArg, notification: NotificationArg, output: Output = Format.text
) -> None:
    """The notification's deliveries, newest first: status, attempts, last answer."""
    list_items(f"{_path(project, notification)}/deliveries", output, DELIVERY_COLUMNS)
