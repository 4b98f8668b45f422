"""Job parameter declarations, and resolving a trigger's values against them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestra.domain.identifiers import check_identifier, check_text
from orchestra.errors import InvalidInput

MAX_VALUE_LENGTH = 100_000


@dataclass(frozen=True)
class Parameter:
    key: str
    description: str = ""
    default: str | None = None
    choices: tuple[str, ...] | None = None
    secret: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "description": self.description}
        if self.default is not None:
            data["default"] = self.default
        if self.choices is not None:
            data["choices"] = list(self.choices)
        if self.secret:
            data["secret"] = True
        return data


def _scalar(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(f"{where} must not contain NUL")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{where} must be valid Unicode (no lone surrogates)") from None
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"{where} is longer than {MAX_VALUE_LENGTH} characters")
    return value


def parse_parameters(raw: object) -> list[Parameter]:
    """Validate a job's declared parameters (a list of mappings with unique keys)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput("parameters must be a list")
    result: list[Parameter] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"parameters[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where} must be a mapping with a key")
        unknown = set(item) - {"key", "description", "default", "choices", "secret"}
        if unknown:
            raise InvalidInput(f"{where}: unknown fields {sorted(unknown)}")
        key = check_identifier(item.get("key"), f"{where}.key")
        if key in seen:
            raise InvalidInput(f"{where}: duplicate parameter key {key!r}")
        seen.add(key)
        default = item.get("default")
        choices = item.get("choices")
        parameter = Parameter(
            key=key,
            description=check_text(item.get("description") or "", f"{where}.description"),
            default=None if default is None else _scalar(default, f"{where}.default"),
            choices=None if choices is None else _choices(choices, where),
            secret=_bool(item.get("secret", False), f"{where}.secret"),
        )
        if parameter.secret and parameter.choices is not None:
            # Its choices would show the values it may take, and its default is stored encrypted.
            raise InvalidInput(f"{where}: a secret parameter takes no choices")
        if parameter.choices and parameter.default is not None:
            if parameter.default not in parameter.choices:
                raise InvalidInput(f"{where}: default {default!r} is not one of the choices")
        result.append(parameter)
    return result


def _choices(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"{where}.choices must be a non-empty list")
    return tuple(_scalar(c, f"{where}.choices") for c in raw)


def _bool(raw: object, where: str) -> bool:
    if not isinstance(raw, bool):
        raise InvalidInput(f"{where} must be true or false")
    return raw


def resolve_parameters(declared: Sequence[Parameter], given: object) -> dict[str, str]:
    """The values a run gets: every declared parameter, from the trigger or its default.
    Undeclared keys, missing values without default and values outside choices are refused."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise InvalidInput("parameters must be a mapping of keys to values")
    by_key = {p.key: p for p in declared}
    unknown = sorted(str(k) for k in given if k not in by_key)
    if unknown:
        raise InvalidInput(f"undeclared parameters: {', '.join(unknown)}")
    values: dict[str, str] = {}
    for parameter in declared:
        if parameter.key in given:
            value = _scalar(given[parameter.key], f"parameter {parameter.key!r}")
        elif parameter.default is not None:
            value = parameter.default
        else:
            raise InvalidInput(f"missing value for parameter {parameter.key!r} (no default)")
        if parameter.choices is not None and value not in parameter.choices:
            raise InvalidInput(
                f"parameter {parameter.key!r} must be one of {list(parameter.choices)}"
            )
        values[parameter.key] = value
    return values
