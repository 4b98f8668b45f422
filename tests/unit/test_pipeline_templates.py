"""Node parameter templates: the closed grammar, the references they make, and rendering."""

from __future__ import annotations

import pytest

from orchestra.domain.pipeline_templates import (
    MissingValue,
    parameter_references,
    render,
    result_references,
)
from orchestra.errors import InvalidInput


def test_references_name_results_and_parameters_in_order_without_repeats() -> None:
    template = "{results[build][package]}-{parameters[v]}-{results[a][x]}-{results[build][package]}"
    assert result_references(template) == [("build", "package"), ("a", "x")]
    assert parameter_references(template) == ["v"]
    assert result_references("plain {{text}}") == []


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{secrets[TOKEN]}", "secrets"),
        ("{ secrets [TOKEN]}", "secrets"),
        ("{parameters[v].__class__}", "unknown field"),
        ("{0}", "unknown field"),
        ("{}", "unknown field"),
        ("{workspace}", "unknown field"),
        ("{results[a]}", "unknown field"),
        ("{parameters[v]:>10}", "format specifications"),
        ("{parameters[v]!r}", "conversions"),
        ("{parameters[v]", "template"),
        ("}", "template"),
    ],
)
def test_anything_else_is_refused_with_a_reason(template: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        result_references(template)


def test_render_substitutes_once_and_keeps_literal_braces() -> None:
    rendered = render(
        "{{x}} {parameters[v]} {results[build][package]}",
        {"v": "{parameters[v]}"},
        {"build": {"package": "{results[build][package]}"}},
    )
    assert rendered == "{x} {parameters[v]} {results[build][package]}"


def test_render_names_what_is_missing() -> None:
    with pytest.raises(MissingValue, match="no result 'package' from node 'build'"):
        render("{results[build][package]}", {}, {"build": {"other": "1"}})
    with pytest.raises(MissingValue, match="no result 'package' from node 'build'"):
        render("{results[build][package]}", {}, {})
    with pytest.raises(MissingValue, match="no pipeline parameter 'v'"):
        render("{parameters[v]}", {}, {})
