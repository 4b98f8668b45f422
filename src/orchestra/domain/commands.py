"""Step command templates, step environments and workspaces: validated when a job is saved,
rendered on the worker.

A template element is formatted on its own with a small, closed grammar: `{NAME}` for the run's
identifiers and workspace, `{parameters[KEY]}`, `{environment[NAME]}` and `{secrets[NAME]}` for
look-ups. Nothing is ever handed to `str.format`, so no attribute access or positional field can
reach an object. A job's `environment` ({VAR: template}) sets variables of its steps' processes;
its values use the same grammar. `{secrets[NAME]}` is allowed in those two places only.
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
LOOKUP_FIELDS = frozenset({"parameters", "environment", "secrets"})
_LOOKUP = re.compile(r"^(parameters|environment|secrets)\[([^\[\]{}]+)\]$")
MAX_COMMAND_ELEMENTS = 1000
MAX_ELEMENT_LENGTH = 100_000
# A project secret's name, and a variable's name in a job's environment.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")  # matched whole (fullmatch)
RESERVED_PREFIX = "ORCHESTRA_"  # the variables Orchestra sets itself
MAX_VARIABLES = 100
MAX_VARIABLE_LENGTH = 10 * 1024
_SECRET_FIELD = re.compile(r"\{\s*secrets\s*\[")


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
    secrets: Mapping[str, str] = field(default_factory=dict)


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
        allowed = (
            ", ".join(sorted(SCALAR_FIELDS)) + ", parameters[KEY], environment[NAME], secrets[NAME]"
        )
        raise InvalidInput(
            f"command element {element!r}: unknown field {{{field_name}}} (allowed: {allowed})"
        )
    if match.group(1) == "secrets" and not NAME_PATTERN.fullmatch(match.group(2)):
        raise InvalidInput(
            f"command element {element!r}: {{{field_name}}} does not name a secret "
            f"(a secret's name matches ^{NAME_PATTERN.pattern}$)"
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
        _check_template(element, declared, where)
    return list(command)


def _check_template(template: str, declared: set[str], where: str) -> None:
    try:
        parts = parse_element(template)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    for part in parts:
        if isinstance(part, Field) and part.name == "parameters" and part.key not in declared:
            raise InvalidInput(f"{where}: {template!r} uses undeclared parameter {part.key!r}")


def check_environment(
    environment: object, declared_parameters: Iterable[str], where: str = "environment"
) -> dict[str, str] | None:
    """Validate a job's environment: {VAR: template}, at most MAX_VARIABLES, names like
    shell variables and not ORCHESTRA_* (Orchestra's own), values templates of the command
    grammar up to MAX_VARIABLE_LENGTH characters. None (or empty): no variables."""
    if environment is None:
        return None
    if not isinstance(environment, Mapping):
        raise InvalidInput(f'{where} must be a mapping such as {{"NAME": "value"}}')
    if len(environment) > MAX_VARIABLES:
        raise InvalidInput(f"{where} has more than {MAX_VARIABLES} variables")
    declared = set(declared_parameters)
    checked: dict[str, str] = {}
    for name, value in environment.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InvalidInput(
                f"{where}: variable name {name!r} must match ^{NAME_PATTERN.pattern}$"
            )
        if name.upper().startswith(RESERVED_PREFIX):
            raise InvalidInput(
                f"{where}: {name} is reserved (Orchestra sets the {RESERVED_PREFIX}* variables)"
            )
        if not isinstance(value, str):
            raise InvalidInput(f"{where}.{name} must be a string")
        if "\x00" in value or len(value) > MAX_VARIABLE_LENGTH:
            raise InvalidInput(
                f"{where}.{name} contains NUL or is longer than {MAX_VARIABLE_LENGTH} characters"
            )
        _check_template(value, declared, f"{where}.{name}")
        checked[name] = value
    return checked or None


def refuse_secret_fields(value: str, where: str) -> None:
    """`{secrets[NAME]}` outside a job's steps' commands and environment is refused."""
    if _SECRET_FIELD.search(value):
        raise InvalidInput(
            f"{where}: {{secrets[NAME]}} is allowed only in a job's steps' commands and "
            "in its environment"
        )


def secret_names(templates: Iterable[str]) -> set[str]:
    """The secrets that these (valid) templates name."""
    names: set[str] = set()
    for template in templates:
        if "secrets" not in template:
            continue  # most templates name none: no parse
        for part in parse_element(template):
            if isinstance(part, Field) and part.name == "secrets" and part.key is not None:
                names.add(part.key)
    return names


def render_environment(
    environment: Mapping[str, str] | None, context: CommandContext
) -> dict[str, str]:
    """A step's variables from its job's environment, each value rendered like a command's
    element (InvalidInput when one cannot be)."""
    return {name: render_element(value, context) for name, value in (environment or {}).items()}


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
            source: Mapping[str, str] = getattr(context, part.name)  # one of LOOKUP_FIELDS
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
    refuse_secret_fields(value, "workspace")
    if value.startswith("/") or posixpath.isabs(value):
        raise InvalidInput(f"workspace must be a relative path, not absolute: {value!r}")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"workspace must not contain '..': {value!r}")
    if not parts:
        raise InvalidInput(f"workspace must name a directory: {value!r}")
    return "/".join(parts)
