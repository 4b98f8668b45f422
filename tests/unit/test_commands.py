"""orchestra.domain.commands: the command template grammar, rendering and workspaces."""

from __future__ import annotations

import pytest

from orchestra.domain.commands import (
    CommandContext,
    check_command,
    check_workspace,
    render_command,
)
from orchestra.errors import InvalidInput

CONTEXT = CommandContext(
    run_identifier="r1",
    project_identifier="p",
    job_identifier="j",
    worker_identifier="w",
    workspace="/data/ws/j",
    parameters={"who": "a b; rm -rf /", "brace": "{workspace}"},
    environment={"HOME": "/home/x"},
)


@pytest.mark.parametrize(
    "element",
    [
        "{parameters.__class__}",
        "{parameters.__class__.__mro__}",
        "{0}",
        "{}",
        "{unknown}",
        "{parameters[nope]}",
        "{workspace!r}",
        "{workspace:>10}",
        "{environment.HOME}",
        "{parameters[who][0]}",
        "{run_identifier.upper}",
        "{",
        "}",
        "a\x00b",
    ],
)
def test_command_refuses_templates_outside_the_grammar(element: str) -> None:
    with pytest.raises(InvalidInput, match="steps"):
        check_command(["echo", element], ["who"], "steps[0]")


@pytest.mark.parametrize("command", [[], "echo hi", ["echo", 1], None, {"a": "b"}])
def test_command_must_be_a_non_empty_list_of_strings(command: object) -> None:
    with pytest.raises(InvalidInput):
        check_command(command, [], "steps[0]")


def test_command_accepts_every_allowed_field() -> None:
    command = [
        "{parameters[who]}",
        "{environment[HOME]}",
        "{run_identifier}{project_identifier}{job_identifier}{worker_identifier}{workspace}",
        "{{literal}}",
    ]
    assert check_command(command, ["who"], "steps[0]") == command


def test_command_renders_each_element_as_one_argument() -> None:
    rendered = render_command(
        ["echo", "hello {parameters[who]}", "{parameters[brace]}", "{environment[HOME]}/{{x}}"],
        CONTEXT,
    )
    assert rendered == ["echo", "hello a b; rm -rf /", "{workspace}", "/home/x/{x}"]


def test_command_render_refuses_an_unknown_environment_variable() -> None:
    with pytest.raises(InvalidInput, match="environment"):
        render_command(["{environment[NOPE]}"], CONTEXT)


@pytest.mark.parametrize(
    "workspace", ["../x", "/abs", "a/../../b", "..", "a/..", "a\\b", "a\x00", "", " ", ".", 3]
)
def test_workspace_refuses_paths_leaving_the_root(workspace: object) -> None:
    with pytest.raises(InvalidInput):
        check_workspace(workspace)


@pytest.mark.parametrize(
    ("workspace", "normalised"),
    [("a", "a"), ("./a//b/", "a/b"), ("a/./b", "a/b"), ("a..b", "a..b")],
)
def test_workspace_normalises_relative_paths(workspace: str, normalised: str) -> None:
    assert check_workspace(workspace) == normalised
