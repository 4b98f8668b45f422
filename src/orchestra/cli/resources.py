"""The verbs every resource's commands share: list (every page), show, create or change
(from a file and options), enable, disable, delete; `-o json` prints the API's JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from orchestra.cli.common import Format, connect, show_many, show_one


def list_items(path: str, output: Format, columns: Sequence[str], **filters: Any) -> None:
    """Every item of the collection at `path`: a table, or one JSON array."""
    with connect() as client:
        show_many(client.items(path, **filters), output, columns)


def show_item(path: str, output: Format) -> None:
    with connect() as client:
        show_one(client.get(path), output)


def write_item(method: str, path: str, body: dict[str, Any], output: Format, done: str) -> None:
    """POST, PUT or PATCH `body`; the answer as JSON with -o json, else a line saying `done`."""
    with connect() as client:
        result = client.request(method, path, json=body)
    if output is Format.json:
        show_one(result, output)
    else:
        typer.echo(done)


def set_enabled(path: str, enabled: bool, output: Format, what: str) -> None:
    state = "enabled" if enabled else "disabled"
    write_item("PATCH", path, {"is_enabled": enabled}, output, f"{what} {state}")


def delete_item(path: str, what: str) -> None:
    with connect() as client:
        client.delete(path)
    typer.echo(f"{what} deleted")
