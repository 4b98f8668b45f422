"""`orchestra apply FILE`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from orchestra.cli.http import Client
from orchestra.errors import InvalidInput


class _Loader(yaml.SafeLoader):
    """YAML as users write it: only `true` and `false` are booleans, so a key such as `on:`
    (in `retry: {on: [failed]}`) stays the string "on" instead of YAML 1.1's True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None


def apply(file: Annotated[Path, typer.Argument(help="a YAML document of projects")]) -> None:
    """Create or update the projects, jobs and schedules of a YAML file."""
    document = load_document(file)
    if not isinstance(document, dict):
        raise InvalidInput(f"{file} must hold a mapping with a 'projects' list")
    client = Client()
    try:
        result = client.request("POST", "/apply", json=document)
    finally:
        client.close()
    for change in result["changes"]:
        typer.echo(f"{change['kind']} {change['identifier']}: {change['action']}")
