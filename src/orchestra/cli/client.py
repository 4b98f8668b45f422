"""`orchestra apply FILE`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from orchestra.cli.http import Client
from orchestra.errors import InvalidInput

# The largest document `apply` reads: the API refuses larger bodies anyway (max_body_bytes).
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


class _Loader(yaml.SafeLoader):
    """YAML as users write it: only `true` and `false` are booleans, so a key such as `on:`
    (in `retry: {on: [failed]}`) stays the string "on" instead of YAML 1.1's True.

    Anchors and aliases are refused: an alias repeats a node without repeating its text, so a
    few hundred bytes of nested aliases expand to gigabytes once loaded (a "billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors (&name) and aliases (*name) are not allowed: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


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
        with path.open("rb") as file:
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"{path} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
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
