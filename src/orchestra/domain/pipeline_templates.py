"""A pipeline node's parameter templates: parsed like commands (domain/commands.py), with a
smaller grammar of their own.

`{parameters[KEY]}` is the pipeline run's parameter KEY, `{results[NODE][KEY]}` the result KEY of
the run of node NODE; `{{` and `}}` are literal braces. Nothing else is a field: no attribute
access, no positional field, no format specification or conversion, and `{secrets[...]}` is
refused (a secret would end up in a run's parameters, shown to every reader). Nothing is ever
handed to `str.format`, and a value substituted is never formatted again.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from orchestra.errors import InvalidInput

MAX_TEMPLATE_LENGTH = 100_000
_PARAMETER = re.compile(r"^parameters\[([^\[\]{}]+)\]$")
_RESULT = re.compile(r"^results\[([^\[\]{}]+)\]\[([^\[\]{}]+)\]$")
_SECRET = re.compile(r"^\s*secrets\s*\[")


class MissingValue(InvalidInput):
    """A template names a value that is not there (a result its node did not write)."""


@dataclass(frozen=True)
class ParameterField:
    key: str


@dataclass(frozen=True)
class ResultField:
    node: str
    key: str


Part = str | ParameterField | ResultField


def parse_template(template: str) -> list[Part]:
    """Split a template into literal text and fields, or raise InvalidInput saying why."""
    if not isinstance(template, str):
        raise InvalidInput(f"a node parameter must be a string, got {type(template).__name__}")
    if "\x00" in template or len(template) > MAX_TEMPLATE_LENGTH:
        raise InvalidInput(
            f"a node parameter must not contain NUL or exceed {MAX_TEMPLATE_LENGTH} characters"
        )
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInput(f"template {template!r}: {exc}") from None
    parts: list[Part] = []
    for literal, field_name, format_spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field_name is None:
            continue
        if format_spec or conversion:
            raise InvalidInput(
                f"template {template!r}: conversions and format specifications are not allowed"
            )
        parts.append(_parse_field(template, field_name))
    return parts


def _parse_field(template: str, field_name: str) -> ParameterField | ResultField:
    if _SECRET.match(field_name):
        raise InvalidInput(
            f"template {template!r}: {{secrets[...]}} is not allowed in a pipeline node's "
            "parameters (use it in the job's steps' commands or environment)"
        )
    match = _PARAMETER.match(field_name)
    if match is not None:
        return ParameterField(match.group(1))
    match = _RESULT.match(field_name)
    if match is not None:
        return ResultField(match.group(1), match.group(2))
    raise InvalidInput(
        f"template {template!r}: unknown field {{{field_name}}} "
        "(allowed: {parameters[KEY]}, {results[NODE][KEY]})"
    )


def result_references(template: str) -> list[tuple[str, str]]:
    """The (node, key) pairs of the results a template names, in order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for part in parse_template(template):
        if isinstance(part, ResultField) and (part.node, part.key) not in pairs:
            pairs.append((part.node, part.key))
    return pairs


def parameter_references(template: str) -> list[str]:
    """The pipeline parameters a template names, in order, without repeats."""
    keys: list[str] = []
    for part in parse_template(template):
        if isinstance(part, ParameterField) and part.key not in keys:
            keys.append(part.key)
    return keys


def render(
    template: str,
    parameters: Mapping[str, str],
    results: Mapping[str, Mapping[str, str]],
) -> str:
    """The template with its fields replaced; MissingValue names the first value not there."""
    out: list[str] = []
    for part in parse_template(template):
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, ParameterField):
            if part.key not in parameters:
                raise MissingValue(f"no pipeline parameter {part.key!r}")
            out.append(parameters[part.key])
        else:
            node_results = results.get(part.node)
            if node_results is None or part.key not in node_results:
                raise MissingValue(f"no result {part.key!r} from node {part.node!r}")
            out.append(node_results[part.key])
    return "".join(out)
