"""A run's results: the `KEY=VALUE` lines its steps write to the file named by
`ORCHESTRA_RESULTS`, parsed and bounded. Pure: no I/O (the worker reads the file,
worker/results.py; the master checks what a worker sends, protocol/messages.py).

A line is `KEY=VALUE`: KEY matches `KEY_PATTERN`, the value is the rest of the line (`=`
included). `\\n` ends a line, and so does `\\r\\n`; blank lines are ignored; a later value for a key
replaces an earlier one. A run's results hold at most `MAX_RESULTS_BYTES`, counted as they would
be written back (`results_size`: each entry's key, value, `=` and newline, in UTF-8).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$"
MAX_RESULTS_BYTES = 64 * 1024
_KEY = re.compile(KEY_PATTERN)
_SHOWN_PREFIX = 20  # characters of a malformed line shown in the message


class MalformedResults(ValueError):
    """A step's results that cannot be taken: what is wrong, said without the values."""


def results_size(results: Mapping[str, str]) -> int:
    """Bytes of `results` written as `KEY=VALUE` lines."""
    return sum(len(k.encode()) + len(v.encode()) + 2 for k, v in results.items())


def valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def problem_with_value(value: str) -> str | None:
    """Why a value cannot be stored (a NUL, refused by PostgreSQL; a line end; a lone
    surrogate), or None."""
    for char in value:
        if char == "\x00":
            return "contains a NUL character"
        if char == "\n":
            return "contains a line end"
        if 0xD800 <= ord(char) <= 0xDFFF:
            return "contains a lone surrogate"
    return None


def parse_results(data: bytes) -> dict[str, str]:
    """The results in a step's file; MalformedResults naming the first bad line (its number
    and at most a short prefix of it, never a whole value)."""
    if len(data) > MAX_RESULTS_BYTES:
        raise MalformedResults(
            f"the results file holds more than the run's limit of {MAX_RESULTS_BYTES} bytes"
        )
    results: dict[str, str] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedResults(f"line {number} of the results file is not UTF-8") from None
        key, equals, value = line.partition("=")
        if not equals:
            raise MalformedResults(
                f"line {number} of the results file is not KEY=VALUE (it starts {_prefix(line)})"
            )
        if not valid_key(key):
            raise MalformedResults(
                f"line {number} of the results file: the key {_prefix(key)} does not match "
                f"{KEY_PATTERN}"
            )
        problem = problem_with_value(value)
        if problem is not None:
            raise MalformedResults(f"line {number} of the results file: the value {problem}")
        results[key] = value
    return results


def merge_results(
    earlier: Mapping[str, str] | None, later: Mapping[str, str] | None
) -> dict[str, str] | None:
    """`earlier` with `later`'s keys replacing its own; None when both hold nothing."""
    if not earlier and not later:
        return None
    return {**(earlier or {}), **(later or {})}


def check_total(results: Mapping[str, str] | None) -> None:
    """MalformedResults when a run's results, merged, exceed the limit."""
    if results and (size := results_size(results)) > MAX_RESULTS_BYTES:
        raise MalformedResults(
            f"the run's results would hold {size} bytes, more than its limit of {MAX_RESULTS_BYTES}"
        )


def _prefix(text: str) -> str:
    shown = text[:_SHOWN_PREFIX]
    return repr(shown) + ("..." if len(text) > _SHOWN_PREFIX else "")
