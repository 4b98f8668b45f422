"""orchestra.domain.parameters: declarations and resolving a trigger's values."""

from __future__ import annotations

import pytest

from orchestra.domain.parameters import parse_parameters, resolve_parameters
from orchestra.errors import InvalidInput

DECLARED = parse_parameters(
    [
        {"key": "needed"},
        {"key": "optional", "default": "d"},
        {"key": "mode", "default": "fast", "choices": ["fast", "slow"]},
        {"key": "count", "default": 3},
    ]
)


def test_parameters_resolve_defaults_and_given_values() -> None:
    assert resolve_parameters(DECLARED, {"needed": "x"}) == {
        "needed": "x",
        "optional": "d",
        "mode": "fast",
        "count": "3",
    }
    values = resolve_parameters(DECLARED, {"needed": "a b; rm -rf /", "mode": "slow", "count": 5})
    assert values["needed"] == "a b; rm -rf /"
    assert values["count"] == "5"


def test_parameters_refuse_undeclared_keys() -> None:
    with pytest.raises(InvalidInput, match="undeclared parameters: other"):
        resolve_parameters(DECLARED, {"needed": "x", "other": "y"})


def test_parameters_refuse_a_missing_value_without_default() -> None:
    with pytest.raises(InvalidInput, match="needed"):
        resolve_parameters(DECLARED, {})
    with pytest.raises(InvalidInput, match="needed"):
        resolve_parameters(DECLARED, None)


@pytest.mark.parametrize(
    "given", [{"needed": None}, {"needed": ["x"]}, {"needed": "a\x00"}, ["needed"]]
)
def test_parameters_refuse_values_that_are_not_scalars(given: object) -> None:
    with pytest.raises(InvalidInput):
        resolve_parameters(DECLARED, given)


def test_parameters_refuse_a_value_outside_the_choices() -> None:
    with pytest.raises(InvalidInput, match="mode"):
        resolve_parameters(DECLARED, {"needed": "x", "mode": "medium"})


@pytest.mark.parametrize(
    "raw",
    [
        "not a list",
        [{"key": "a"}, {"key": "a"}],
        [{"key": "-bad"}],
        [{"key": "a", "colour": "red"}],
        [{"key": "a", "default": "z", "choices": ["x", "y"]}],
        [{"key": "a", "choices": []}],
        [{"key": "a", "secret": "yes"}],
        ["a"],
    ],
)
def test_parameters_refuse_bad_declarations(raw: object) -> None:
    with pytest.raises(InvalidInput):
        parse_parameters(raw)
