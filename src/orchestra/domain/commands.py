"""Step command templates and workspaces: validated when a job is saved, rendered on the worker.

A template element is formatted on its own with a small, closed grammar: `{NAME}` for the run's
identifiers and workspace, `{parameters[KEY]}` and `{environment[NAME]}` for look-ups. Nothing is
ever handed to `str.format`, so no attribute access or positional field can reach an object.
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestra.errors import InvalidInput

SCALAR_FIELDS = frozenset(
    {
        "run_identifier",
        "project_identifier",
        "job_identifier",
        "worker_identifier",
        "workspace",
    }
)
LOOKUP_FIELDS = frozenset({"parameters", "environment"})
_LOOKUP = re.compile(r"^(parameters|environment)\[([^\[\]{}]+)\]$")
MAX_COMMAND_ELEMENTS = 1000
MAX_ELEMENT_LENGTH = 100_000


@dataclass(frozen=True)
class Field:
    name: str
    key: str | None = None


@dataclass(frozen=True)
class CommandContext:
    run_identifier: str
    project_identifier: str
    job_identifier: str
    worker_identifier: str
    workspace: str
    parameters: Mapping[str, str]
    environment: Mapping[str, str]


def parse_element(element: str) -> list[str | Field]:
    """Split one template element into literal text and fields, or raise InvalidInput."""
    parts: list[str | Field] = []
    try:
        parsed = list(string.Formatter().parse(element))
    except ValueError as exc:
        raise InvalidInput(f"command element {element!r}: {exc}") from None
    for literal, field_name, format_spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field_name is None:
            continue
        if format_spec or conversion:
            raise InvalidInput(
                f"command element {element!r}: conversions and format specifications "
                "are not allowed"
            )
        parts.append(_parse_field(element, field_name))
    return parts


def _parse_field(element: str, field_name: str) -> Field:
    if field_name in SCALAR_FIELDS:
        return Field(field_name)
    match = _LOOKUP.match(field_name)
    if match is None:
        allowed = ", ".join(sorted(SCALAR_FIELDS)) + ", parameters[KEY], environment[NAME]"
        raise InvalidInput(
            f"command element {element!r}: unknown field {{{field_name}}} (allowed: {allowed})"
        )
    return Field(match.group(1), match.group(2))


def check_command(command: object, declared_parameters: Iterable[str], where: str) -> list[str]:
    """Validate a step command: a non-empty list of strings whose fields are all allowed and whose
    parameter look-ups name declared parameters."""
    if not isinstance(command, list) or not command:
        raise InvalidInput(f"{where}: command must be a non-empty list of strings")
    if len(command) > MAX_COMMAND_ELEMENTS:
        raise InvalidInput(f"{where}: command has more than {MAX_COMMAND_ELEMENTS} elements")
    declared = set(declared_parameters)
    for element in command:
        if not isinstance(element, str):
            raise InvalidInput(f"{where}: command elements must be strings, got {element!r}")
        if "\x00" in element or len(element) > MAX_ELEMENT_LENGTH:
            raise InvalidInput(f"{where}: command element contains NUL or is too long")
        try:
            parts = parse_element(element)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        for part in parts:
            if isinstance(part, Field) and part.name == "parameters" and part.key not in declared:
                raise InvalidInput(
                    f"{where}: command element {element!r} uses undeclared parameter {part.key!r}"
                )
    return list(command)


def render_command(command: Sequence[str], context: CommandContext) -> list[str]:
    """Render every element of a command; each element stays exactly one argument."""
    return [render_element(element, context) for element in command]


def render_element(element: str, context: CommandContext) -> str:
    out: list[str] = []
    for part in parse_element(element):
        if isinstance(part, str):
            out.append(part)
        elif part.key is None:
            out.append(str(getattr(context, part.name)))
        else:
            source = context.parameters if part.name == "parameters" else context.environment
            if part.key not in source:
                raise InvalidInput(f"{part.name}[{part.key}] is not defined")
            out.append(source[part.key])
    value = "".join(out)
    if "\x00" in value:
        raise InvalidInput(f"command element {element!r} renders to a value containing NUL")
    return value


def check_workspace(value: object) -> str:
    """A workspace is a relative path under the worker's workspace root: no absolute path, no
    `..`, no NUL, no backslash tricks; returned normalised."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("workspace must be a non-empty relative path")
    if "\x00" in value or "\\" in value or len(value) > 1000:
        raise InvalidInput(f"workspace must not contain NUL or backslashes: {value!r}")
    if value.startswith("/") or posixpath.isabs(value):
        raise InvalidInput(f"workspace must be a relative path, not absolute: {value!r}")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"workspace must not contain '..': {value!r}")
    if not parts:
        raise InvalidInput(f"workspace must name a directory: {value!r}")
    return "/".join(parts)
