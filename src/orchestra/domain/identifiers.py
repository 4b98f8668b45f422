"""Identifiers of projects, jobs, schedules, users and workers, and free-text names."""

from __future__ import annotations

import re
import unicodedata
import uuid

from orchestra.errors import InvalidInput

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
MAX_TEXT_LENGTH = 10_000


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def check_identifier(value: object, what: str = "identifier") -> str:
    """Return `value` if it is a valid identifier, else raise InvalidInput naming `what`."""
    if not is_identifier(value):
        raise InvalidInput(
            f"{what} must match {IDENTIFIER_PATTERN} (letters, digits, '.', '_', '-'; "
            f"at most 100 characters, not starting with a punctuation mark): {value!r}"
        )
    assert isinstance(value, str)
    return value


def check_run_identifier(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidInput(f"run identifier must be a UUID: {value!r}") from None


def check_text(value: object, what: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Free text (display names, descriptions): any Unicode, normalised to NFC, but no NUL
    or other control characters except tab and newline, and bounded in length."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    text = unicodedata.normalize("NFC", value)
    for char in text:
        if char in "\t\n\r":
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidInput(f"{what} must not contain control characters ({char!r})")
    if len(text) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters")
    return text
