"""A pipeline's definition: defaults filled, every refusal naming its node, and the order and
depth helpers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestra.domain.pipelines import (
    MAX_NODES,
    ancestors,
    check_pipeline,
    levels,
    topological_order,
)
from orchestra.errors import InvalidInput

JOBS: dict[str, Any] = {
    "build": {"parameters": [{"key": "version"}]},  # required
    "test": {"parameters": [{"key": "package", "default": "none"}]},
    "publish": {"parameters": []},
    "deploy": {"parameters": [{"key": "token", "secret": True, "default": "sealed"}]},
    "pick": {"parameters": [{"key": "os", "choices": ["linux", "mac"], "default": "linux"}]},
}


def pipeline(*nodes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "identifier": "release",
        "parameters": [{"key": "version", "default": "1.0"}],
        "nodes": list(nodes),
        **fields,
    }


BUILD = {"identifier": "build", "job": "build", "parameters": {"version": "{parameters[version]}"}}


def test_a_valid_pipeline_is_normalized_with_defaults() -> None:
    checked = check_pipeline(
        pipeline(
            BUILD,
            {
                "identifier": "test",
                "job": "test",
                "needs": ["build"],
                "parameters": {"package": "{results[build][package]}"},
            },
            {"identifier": "approve", "approval": {"description": "Go?"}, "needs": ["test"]},
            {"identifier": "publish", "job": "publish", "needs": ["approve"]},
            {"identifier": "report", "job": "publish", "needs": ["build"], "when": "failure"},
        ),
        JOBS,
    )
    assert checked["display_name"] == "release"
    assert checked["description"] == ""
    assert checked["is_enabled"] is True
    assert checked["parameters"] == [{"key": "version", "description": "", "default": "1.0"}]
    assert checked["nodes"][0] == {
        "identifier": "build",
        "job": "build",
        "needs": [],
        "when": "success",
        "parameters": {"version": "{parameters[version]}"},
    }
    assert checked["nodes"][2] == {
        "identifier": "approve",
        "approval": {"description": "Go?"},
        "needs": ["test"],
        "when": "success",
        "parameters": {},
    }
    assert checked["nodes"][4]["when"] == "failure"


def test_a_result_of_a_transitive_need_is_allowed() -> None:
    check_pipeline(
        pipeline(
            BUILD,
            {"identifier": "wait", "approval": {}, "needs": ["build"]},
            {
                "identifier": "test",
                "job": "test",
                "needs": ["wait"],
                "parameters": {"package": "{results[build][package]}"},
            },
        ),
        JOBS,
    )


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            [
                {"identifier": "a", "approval": {}, "needs": ["c"]},
                {"identifier": "b", "approval": {}, "needs": ["a"]},
                {"identifier": "c", "approval": {}, "needs": ["b"]},
            ],
            "node 'a': the needs form a cycle: a -> b -> c -> a",
        ),
        (
            [{"identifier": "a", "approval": {}, "needs": ["a"]}],
            "node 'a': a node cannot need itself",
        ),
        (
            [{"identifier": "a", "approval": {}, "needs": ["ghost"]}],
            "node 'a' needs unknown node 'ghost'",
        ),
        (
            [
                BUILD,
                {"identifier": "side", "approval": {}},
                {
                    "identifier": "t",
                    "job": "test",
                    "needs": ["side"],
                    "parameters": {"package": "{results[build][package]}"},
                },
            ],
            "node 't': parameter 'package' uses a result of node 'build', which is not among",
        ),
        (
            [{"identifier": "n", "needs": []}],
            "node 'n': a node names exactly one of job and approval",
        ),
        (
            [{"identifier": "n", "job": "publish", "approval": {}}],
            "node 'n': a node names exactly one of job and approval",
        ),
        ([{"identifier": "n", "job": "nope"}], "node 'n': no job 'nope' in this project"),
        (
            [{"identifier": "n", "job": "publish", "parameters": {"extra": "1"}}],
            "node 'n': job 'publish' declares no parameter 'extra'",
        ),
        (
            [{"identifier": "n", "job": "build"}],
            "node 'n': job 'build' requires parameter 'version'",
        ),
        (
            [{"identifier": "n", "job": "build", "parameters": {"version": "{secrets[X]}"}}],
            "node 'n': parameter 'version'.*secrets",
        ),
        (
            [{"identifier": "n", "job": "build", "parameters": {"version": "{parameters[nope]}"}}],
            "node 'n': parameter 'version' uses {parameters\\[nope\\]}, which the pipeline",
        ),
        ([BUILD, dict(BUILD)], "node 'build' appears more than once"),
        (
            [{"identifier": "n", "job": "deploy", "parameters": {"token": "x"}}],
            "node 'n': parameter 'token' of job 'deploy' is secret",
        ),
        (
            [{"identifier": "n", "job": "pick", "parameters": {"os": "windows"}}],
            "node 'n': parameter 'os' must be one of",
        ),
        (
            [{"identifier": "n", "approval": {}, "parameters": {"a": "1"}}],
            "node 'n': an approval takes no parameters",
        ),
        (
            [{"identifier": "n", "approval": {}, "when": "sometimes"}],
            "node 'n': when must be one of success, failure, always",
        ),
        ([{"identifier": "n", "approval": {}, "colour": "red"}], "node 'n': unknown fields colour"),
        (
            [{"identifier": "n", "job": "build", "parameters": {"version": "{results[n][x]}"}}],
            "node 'n': parameter 'version' uses a result of node 'n'",
        ),
    ],
)
def test_each_refusal_names_the_node(nodes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_pipeline(pipeline(*nodes), JOBS)


def test_more_than_the_maximum_of_nodes_is_refused() -> None:
    nodes = [{"identifier": f"n{i}", "approval": {}} for i in range(MAX_NODES + 1)]
    with pytest.raises(InvalidInput, match=f"at most {MAX_NODES} nodes"):
        check_pipeline(pipeline(*nodes), JOBS)
    check_pipeline(pipeline(*nodes[:MAX_NODES]), JOBS)


def test_secret_pipeline_parameters_and_empty_pipelines_are_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot be secret"):
        check_pipeline(pipeline(BUILD, parameters=[{"key": "v", "secret": True}]), JOBS)
    with pytest.raises(InvalidInput, match="nodes must be a non-empty list"):
        check_pipeline(pipeline(), JOBS)
    with pytest.raises(InvalidInput, match="unknown fields"):
        check_pipeline(pipeline(BUILD, steps=[]), JOBS)


def test_order_ancestors_and_levels() -> None:
    nodes = [
        {"identifier": "publish", "needs": ["approve"]},
        {"identifier": "approve", "needs": ["t1", "t2"]},
        {"identifier": "t2", "needs": ["build"]},
        {"identifier": "t1", "needs": ["build"]},
        {"identifier": "build", "needs": []},
    ]
    assert topological_order(nodes) == ["build", "t2", "t1", "approve", "publish"]
    assert ancestors(nodes)["publish"] == {"approve", "t1", "t2", "build"}
    assert ancestors(nodes)["build"] == set()
    assert levels(nodes) == {"build": 0, "t1": 1, "t2": 1, "approve": 2, "publish": 3}


def test_the_graph_puts_nodes_in_columns_by_depth_and_colours_them_by_status() -> None:
    from orchestra.web.site.pipeline_graph import BOX_WIDTH, COLUMN_GAP, pipeline_svg

    nodes = [
        {"identifier": "build", "job": "build", "needs": []},
        {"identifier": "ok", "approval": {"description": ""}, "needs": ["build"]},
        {"identifier": "late", "job": "publish", "needs": ["build", "ok"], "when": "always"},
    ]
    svg = str(
        pipeline_svg(nodes, {"build": "succeeded", "ok": "waiting", "late": '"><x'}, "/r/{node}")
    )
    columns = {
        name: int(x)
        for name, x in re.findall(r'data-node="([^"]+)"><title>[^<]*</title><rect x="(\d+)"', svg)
    }
    step = BOX_WIDTH + COLUMN_GAP
    assert columns == {"build": 8, "ok": 8 + step, "late": 8 + 2 * step}
    assert 'class="pipeline-node node-job status-succeeded" data-node="build"' in svg
    assert 'class="pipeline-node node-approval status-waiting" data-node="ok"' in svg
    assert 'class="pipeline-node node-job" data-node="late"' in svg  # no such status: no class
    assert "<x" not in svg
    linked = str(pipeline_svg(nodes, links={"build": '/runs/1"><x'}))
    assert linked.count("<a href=") == 1  # only the node given a path is a link, escaped
    assert '<a href="/runs/1&quot;&gt;&lt;x"><g class="pipeline-node node-job"' in linked
    assert '<a href="/r/late">' in svg
    assert len(re.findall(r'class="pipeline-edge"', svg)) == 3
