"""`orchestra apply FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestra.cli.common import Format, Output, connect, show_one
from orchestra.client import DocumentError, read_document
from orchestra.client.documents import MAX_DOCUMENT_BYTES
from orchestra.errors import InvalidInput

__all__ = ["MAX_DOCUMENT_BYTES", "apply", "load_document"]


def load_document(path: Path) -> Any:
    """The YAML file at `path` as users write it (orchestra.client.read_document); InvalidInput
    if it cannot be read."""
    try:
        return read_document(path)
    except DocumentError as exc:
        raise InvalidInput(str(exc)) from None


def apply(
    file: Annotated[Path, typer.Argument(help="a YAML document of projects")],
    output: Output = Format.text,
) -> None:
    """Create or update the projects, jobs, pipelines and schedules of a YAML file."""
    document = load_document(file)
    if not isinstance(document, dict):
        raise InvalidInput(f"{file} must hold a mapping with a 'projects' list")
    with connect() as client:
        result = client.apply(document)
    if output is Format.json:
        show_one(result, output)
        return
    for change in result["changes"]:
        typer.echo(f"{change['kind']} {change['identifier']}: {change['action']}")
