"""What happens next in a pipeline run (domain/pipeline_progress.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from orchestra.domain.pipeline_progress import (
    CannotRender,
    NodeState,
    condition,
    decide,
    final_status,
    ordered,
)


def render(
    templates: Mapping[str, str], results: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """`@NODE.KEY` is a result; anything else is literal."""
    values = {}
    for key, template in templates.items():
        if template.startswith("@"):
            node, _, name = template[1:].partition(".")
            if name not in results.get(node, {}):
                raise CannotRender(f"no result {name!r} from node {node!r}")
            values[key] = results[node][name]
        else:
            values[key] = template
    return values


def job(name: str, *needs: str, when: str = "success", **parameters: str) -> dict[str, Any]:
    return {
        "identifier": name,
        "job": "j",
        "needs": list(needs),
        "when": when,
        "parameters": parameters,
    }


def approval(name: str, *needs: str) -> dict[str, Any]:
    return {
        "identifier": name,
        "approval": {"description": "ok?"},
        "needs": list(needs),
        "when": "success",
        "parameters": {},
    }


RELEASE = [
    job("build"),
    job("test-linux", "build", package="@build.package"),
    job("test-mac", "build", package="@build.package"),
    approval("approve", "test-linux", "test-mac"),
    job("publish", "approve"),
    job("report", "build", "test-linux", "test-mac", when="failure"),
]


def ran(status: str) -> NodeState:
    return NodeState(status, started=True)


def test_nodes_without_needs_start_at_once_with_their_parameters() -> None:
    progress = decide([job("a", x="1"), job("b", y="2"), job("c", "a")], {}, {}, render)
    assert progress.start == {"a": {"x": "1"}, "b": {"y": "2"}}
    assert progress.skip == [] and progress.wait == [] and progress.status is None


def test_fan_out_after_build_with_its_results() -> None:
    states = {"build": ran("succeeded")}
    progress = decide(RELEASE, states, {"build": {"package": "p.tgz"}}, render)
    assert progress.start == {"test-linux": {"package": "p.tgz"}, "test-mac": {"package": "p.tgz"}}
    assert progress.status is None


def test_fan_in_waits_for_every_need() -> None:
    states = {"build": ran("succeeded"), "test-linux": ran("succeeded"), "test-mac": ran("running")}
    progress = decide(RELEASE, states, {}, render)
    assert not progress.changes_nodes
    states["test-mac"] = ran("succeeded")
    progress = decide(RELEASE, states, {}, render)
    assert progress.wait == ["approve"]
    assert progress.skip == ["report"]  # every need final, none failed
    assert progress.start == {}


def test_a_failure_skips_the_success_branch_and_starts_the_failure_branch() -> None:
    states = {"build": ran("failed")}
    progress = decide(RELEASE, states, {}, render)
    assert progress.skip == ["test-linux", "test-mac", "approve", "publish"]
    assert progress.start == {"report": {}}
    assert progress.status is None  # report runs
    states.update({n: NodeState("skipped") for n in progress.skip})
    states["report"] = ran("succeeded")
    assert decide(RELEASE, states, {}, render).status == "failed"


def test_always_runs_after_any_end() -> None:
    nodes = [job("a"), job("cleanup", "a", when="always")]
    for status in ("succeeded", "failed", "aborted", "cancelled", "exception"):
        assert decide(nodes, {"a": ran(status)}, {}, render).start == {"cleanup": {}}
    assert decide(nodes, {"a": ran("running")}, {}, render).start == {}


def test_skips_propagate_down_the_graph() -> None:
    nodes = [job("a"), job("b", "a"), job("c", "b"), job("d", "c", when="always")]
    progress = decide(nodes, {"a": ran("failed")}, {}, render)
    assert progress.skip == ["b", "c"]
    assert progress.start == {"d": {}}  # always: its need is final (skipped)


def test_a_missing_result_ends_the_node_exception_and_its_dependents_follow() -> None:
    nodes = [job("a"), job("b", "a", v="@a.missing"), job("c", "b"), job("r", "b", when="failure")]
    progress = decide(nodes, {"a": ran("succeeded")}, {"a": {}}, render)
    assert progress.exceptions == {"b": "no result 'missing' from node 'a'"}
    assert "b" not in progress.start
    assert progress.skip == ["c"]
    assert progress.start == {"r": {}}


def test_approvals_wait_then_follow_their_decision() -> None:
    done = {
        "build": ran("succeeded"),
        "test-linux": ran("succeeded"),
        "test-mac": ran("succeeded"),
        "report": NodeState("skipped"),
    }
    waiting = decide(RELEASE, {**done, "approve": NodeState("waiting")}, {}, render)
    assert not waiting.changes_nodes and waiting.status is None
    approved = decide(RELEASE, {**done, "approve": NodeState("succeeded")}, {}, render)
    assert approved.start == {"publish": {}}
    rejected = decide(RELEASE, {**done, "approve": NodeState("failed")}, {}, render)
    assert rejected.skip == ["publish"]
    assert rejected.status == "failed"


def test_cancel_skips_everything_not_started_and_starts_nothing() -> None:
    states = {
        "build": ran("succeeded"),
        "test-linux": ran("running"),
        "test-mac": ran("pending"),
        "approve": NodeState("waiting"),
    }
    progress = decide(RELEASE, states, {}, render, cancelled=True)
    assert progress.start == {} and progress.wait == []
    assert sorted(progress.skip) == ["approve", "publish", "report"]
    assert progress.status is None  # test-linux and test-mac are still going
    states.update({"test-linux": ran("aborted"), "test-mac": ran("cancelled")})
    states.update({n: NodeState("skipped") for n in progress.skip})
    assert decide(RELEASE, states, {}, render, cancelled=True).status == "cancelled"


def test_final_statuses() -> None:
    assert final_status({"a": ran("succeeded"), "b": NodeState("skipped")}, False) == "succeeded"
    assert final_status({"a": ran("succeeded"), "b": ran("exception")}, False) == "failed"
    assert final_status({"a": ran("succeeded")}, True) == "cancelled"
    assert final_status({"a": ran("succeeded"), "b": NodeState("waiting")}, False) is None
    assert final_status({"a": ran("succeeded"), "b": ran("pending")}, False) is None


@pytest.mark.parametrize(
    ("when", "needs", "expected"),
    [
        ("success", ["succeeded", "succeeded"], True),
        ("success", ["succeeded", "skipped"], False),
        ("success", ["succeeded", "running"], None),
        ("failure", ["succeeded", "failed"], True),
        ("failure", ["succeeded", "skipped"], False),
        ("failure", ["exception", "pending"], None),
        ("always", ["skipped", "failed"], True),
        ("always", [], True),
        ("success", [], True),
    ],
)
def test_conditions(when: str, needs: list[str], expected: bool | None) -> None:
    assert condition(when, [NodeState(s, started=True) for s in needs]) is expected


def test_started_nodes_are_never_started_again() -> None:
    progress = decide([job("a")], {"a": NodeState("pending", started=True)}, {}, render)
    assert progress.start == {}


def test_order_puts_each_node_after_its_needs() -> None:
    names = [str(n["identifier"]) for n in ordered(list(reversed(RELEASE)))]
    for node in RELEASE:
        for need in node["needs"]:
            assert names.index(need) < names.index(node["identifier"])
