"""YAML documents as users write them, read safely: what `apply` sends."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestra.client.errors import DocumentError

# The largest document read: the API refuses larger bodies anyway.
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


class _Loader(yaml.SafeLoader):
    """Only `true` and `false` are booleans, so a key such as `on:` (in `retry: {on:
    [failed]}`) stays the string "on" instead of YAML 1.1's True.

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


def read_document(path: Path | str) -> Any:
    """The YAML file at `path`, loaded; DocumentError if it cannot be read."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{path} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DocumentError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None


def apply_body(path_or_document: Path | str | dict[str, Any]) -> dict[str, Any]:
    """The body of POST /apply: a mapping as given, or the YAML file it names."""
    document = (
        path_or_document if isinstance(path_or_document, dict) else read_document(path_or_document)
    )
    if not isinstance(document, dict):
        raise DocumentError(f"{path_or_document} must hold a mapping with a 'projects' list")
    return document
