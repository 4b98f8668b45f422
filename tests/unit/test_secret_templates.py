"""`{secrets[NAME]}` in command templates and job environments (orchestra.domain.commands), and
the masking of secret values in output (orchestra.domain.masking)."""

from __future__ import annotations

import pytest

from orchestra.domain.commands import (
    CommandContext,
    check_environment,
    render_command,
    render_environment,
    secret_names,
)
from orchestra.domain.masking import mask, mask_values
from orchestra.errors import InvalidInput

CONTEXT = CommandContext(
    run_identifier="r1",
    project_identifier="p",
    job_identifier="j",
    worker_identifier="w",
    workspace="/ws/j",
    parameters={"who": "{secrets[TOKEN]}"},
    environment={"HOME": "/home/x"},
    secrets={"TOKEN": "t0k"},
)


def test_secret_names_are_found_in_templates_only_where_fields_name_them() -> None:
    templates = ["echo", "{secrets[A]}-{secrets[B_2]}", "{{secrets[LITERAL]}}", "x{secrets[A]}"]
    assert secret_names(templates) == {"A", "B_2"}
    assert secret_names(["secrets", "{workspace}"]) == set()


def test_secrets_render_as_one_argument_and_parameters_never_render_secrets() -> None:
    argv = render_command(["echo", "--token={secrets[TOKEN]}", "{parameters[who]}"], CONTEXT)
    # A parameter's value is inserted as it is: a triggerer cannot name a secret through it.
    assert argv == ["echo", "--token=t0k", "{secrets[TOKEN]}"]
    with pytest.raises(InvalidInput, match=r"secrets\[OTHER\] is not defined"):
        render_command(["{secrets[OTHER]}"], CONTEXT)


def test_an_environment_renders_with_the_command_fields() -> None:
    environment = {"AUTH": "Bearer {secrets[TOKEN]}", "WHERE": "{workspace}:{environment[HOME]}"}
    assert render_environment(environment, CONTEXT) == {
        "AUTH": "Bearer t0k",
        "WHERE": "/ws/j:/home/x",
    }
    assert render_environment(None, CONTEXT) == {}


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"ORCHESTRA_TOKEN": "x"}, "reserved"),
        ({"Orchestra_Url": "x"}, "reserved"),
        ({"A B": "x"}, "must match"),
        ({"A\n": "x"}, "must match"),
        ({"A": "{secrets[B\n]}"}, "does not name a secret"),
        ({"A" * 101: "x"}, "must match"),
        ({"A": 1}, "must be a string"),
        ({"A": "{parameters[undeclared]}"}, "undeclared parameter"),
        ({"A": "{secrets[bad-name]}"}, "does not name a secret"),
        ({"A": "{secrets}"}, "unknown field"),
        ("A=1", "must be a mapping"),
    ],
)
def test_environments_outside_the_rules_are_refused(environment: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_environment(environment, ["declared"])


def test_environments_at_the_limits_are_accepted() -> None:
    full = {f"V_{i}": "x" * (10 * 1024) for i in range(100)}
    assert check_environment(full, []) == full
    assert check_environment({"_": "{parameters[declared]}"}, ["declared"]) == {
        "_": "{parameters[declared]}"
    }
    assert check_environment({}, []) is None
    assert check_environment(None, []) is None


def test_masking_hides_every_occurrence_and_keeps_the_length() -> None:
    masks = mask_values(["abc", "abcdef", "", "abc"])
    assert masks == (b"abcdef", b"abc")  # the longest first, each once
    data = b"abcdef abc xabcx abcab"
    assert mask(data, masks) == b"****** *** x***x ***ab"
    plain = b"nothing here"
    assert mask(plain, masks) is plain  # untouched data is not copied
