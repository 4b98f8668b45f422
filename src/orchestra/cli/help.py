"""Help that reads like a command's manual: Typer shows each value's Python type (`<str>`,
`<list[str]>`, `<bool>` beside a flag) and `{project}` in the usage line. Here arguments show
their name in capitals (PROJECT), options a plain word for their value (TEXT, INTEGER, PATH,
the choices) or the metavar they were given, and flags nothing.

Typer builds its parameters itself (no hook chooses their class), so the built command tree is
walked once and its parameters given these subclasses, which change only what help shows."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

# Typer 0.2x carries its own copy of click (typer._click), older ones use click itself: the
# classes are found from what typer exports, whichever it is.
UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

_WORDS = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "text": "TEXT",
    "integer": "INTEGER",
    "integer range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "path": "PATH",
    "boolean": "BOOLEAN",
}


class _Argument(TyperArgument):
    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:  # noqa: ARG002
        return None  # its name says it

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _Option(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        described = getattr(super(), "display_type", None)  # typer 0.2x: "<int range>"
        if described is not None:
            label = str(described(ctx)).strip("<>")
        else:  # an older typer: click's ParamType
            label = str(getattr(getattr(self, "type", None), "name", "text"))
        label = label.removeprefix("list[").removesuffix("]")
        if "|" in label:
            return label  # the choices
        return _WORDS.get(label.lower(), label.upper())


def _make_readable(parameter: Any) -> None:
    if type(parameter) is TyperArgument:
        parameter.__class__ = _Argument
    elif type(parameter) is TyperOption:
        parameter.__class__ = _Option


def make_readable(command: Any) -> None:
    """Give every parameter of `command` and its subcommands the readable help above (the
    help option too, which click makes when asked)."""
    for parameter in command.params:
        _make_readable(parameter)
    make_help_option = command.get_help_option

    def readable_help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            _make_readable(option)
        return option

    command.get_help_option = readable_help_option
    if hasattr(command, "commands"):  # a group
        for subcommand in command.commands.values():
            make_readable(subcommand)
