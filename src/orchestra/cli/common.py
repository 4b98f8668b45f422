"""What the client commands share: the connection (ORCHESTRA_URL, ORCHESTRA_USER,
ORCHESTRA_TOKEN), `-o json`, tables and `key: value` lines, KEY=VALUE options, bodies read from
files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestra.cli import http
from orchestra.cli.http import Client
from orchestra.client import read_document
from orchestra.errors import InvalidInput


class Format(StrEnum):
    text = "text"
    json = "json"


Output = Annotated[
    Format,
    typer.Option(
        "--output", "-o", help="text, or json: exactly what the API answers", show_default=False
    ),
]
ProjectArg = Annotated[str, typer.Argument(help="the project's identifier")]
FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="the fields, as YAML or JSON (as the API takes them)"),
]


def connect() -> Client:
    """A client with the environment's URL and credentials (a token is required), whose
    errors are the CLI's (one line each)."""
    return Client()


def key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """`--option KEY=VALUE` given several times, as a mapping; a usage error (exit status 2)
    for an item without `=`."""
    try:
        return http.key_values(items, option)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


def read_body(file: Path | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a file (YAML or JSON), with those given as options over them."""
    body: dict[str, Any] = {}
    if file is not None:
        with http.translated():
            document = read_document(file)
        if not isinstance(document, dict):
            raise InvalidInput(f"{file} must hold a mapping of fields")
        body.update(document)
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def show_one(value: dict[str, Any], output: Format) -> None:
    """One object: the API's JSON, or one `key: value` line per field."""
    if output is Format.json:
        print_json(value)
        return
    width = max((len(key) for key in value), default=0)
    for key, field in value.items():
        typer.echo(f"{key:<{width}}  {_text(field)}")


def show_many(items: Iterable[dict[str, Any]], output: Format, columns: Sequence[str]) -> None:
    """Every item: one JSON array, or a table of `columns` (the table once all are read)."""
    if output is Format.json:
        print_json(list(items))
        return
    rows = [[_text(item.get(column)) for column in columns] for item in items]
    header = [column.upper() for column in columns]
    widths = [max(len(cell) for cell in cells) for cells in zip(header, *rows, strict=False)]
    for cells in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        typer.echo(line.rstrip())


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
