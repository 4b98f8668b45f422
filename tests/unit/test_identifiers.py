"""orchestra.domain.identifiers: identifiers and free text."""

from __future__ import annotations

import pytest

from orchestra.domain.identifiers import (
    check_identifier,
    check_run_identifier,
    check_text,
    is_identifier,
)
from orchestra.errors import InvalidInput


@pytest.mark.parametrize("value", ["a", "A1", "a.b_c-d", "0", "x" * 100, "a..b"])
def test_identifier_accepts_valid_values(value: str) -> None:
    assert is_identifier(value)
    assert check_identifier(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-x",
        ".x",
        "_x",
        "a/b",
        "x" * 101,
        "a\x00",
        "../x",
        "<script>",
        "a b",
        "é",
        "a\n",
        5,
        None,
    ],
)
def test_identifier_refuses_invalid_values(value: object) -> None:
    assert not is_identifier(value)
    with pytest.raises(InvalidInput, match="project identifier"):
        check_identifier(value, "project identifier")


def test_identifier_refuses_a_trailing_newline_that_dollar_would_allow() -> None:
    assert not is_identifier("abc\n")


def test_run_identifier_must_be_a_uuid() -> None:
    assert check_run_identifier("00000000-0000-0000-0000-000000000001").endswith("1")
    with pytest.raises(InvalidInput):
        check_run_identifier("not-a-uuid")


def test_text_keeps_unicode_and_normalises_to_nfc() -> None:
    assert check_text("Ünïcødé 名前 🚀", "name") == "Ünïcødé 名前 🚀"
    assert check_text("e\u0301", "name") == "\u00e9"
    assert check_text("tab\tnew\nline", "name") == "tab\tnew\nline"


@pytest.mark.parametrize("value", ["a\x00", "\x07", "\x1b[31m", "\ud800", 3])
def test_text_refuses_control_characters_and_non_strings(value: object) -> None:
    with pytest.raises(InvalidInput):
        check_text(value, "name")


def test_text_refuses_overlong_values() -> None:
    assert check_text("x" * 10, "name", max_length=10)
    with pytest.raises(InvalidInput, match="longer"):
        check_text("x" * 11, "name", max_length=10)
