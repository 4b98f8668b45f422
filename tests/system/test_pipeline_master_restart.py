"""The all-in-one server (the only master there can be on SQLite) killed -9 while pipeline runs
are in the middle, then started again on the same database: every pipeline run still ends
`succeeded`, every node has exactly one run, and every run ran once (the runs' own journal).
What the killed master had marked but not advanced is advanced by the one that comes back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.waiting import wait_until
from tests.system.test_pipeline_masters import NODES, STEP

PIPELINE_RUNS = 4


def test_a_master_killed_in_the_middle_and_restarted_runs_every_node_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    cluster.start()
    port = urlsplit(cluster.url).port
    assert port is not None and cluster.server is not None
    api = cluster.api
    api.put_job(
        "step", [py(STEP, str(journal), "{parameters[node]}")], parameters=[{"key": "node"}]
    )
    api.request("POST", "/projects/p/pipelines", 201, json={"identifier": "g", "nodes": NODES})
    cluster.start_worker("w1", executors=2)
    cluster.start_worker("w2", executors=2)
    identifiers = [
        api.request("POST", "/projects/p/pipelines/g/trigger", 201, json={}).json()["identifier"]
        for _ in range(PIPELINE_RUNS)
    ]
    wait_until(
        lambda: journal.exists() and len(journal.read_text().splitlines()) >= 2 * PIPELINE_RUNS,
        60,
        "the pipelines under way",
    )
    cluster.server.kill()  # -9, with runs going on and pipeline runs to advance
    cluster.start_server(port=port)
    cluster.wait_for_workers(["w1", "w2"])
    api = cluster.api

    def all_final() -> list[dict] | None:
        shown = [
            api.request("GET", f"/projects/p/pipeline-runs/{i}", 200).json() for i in identifiers
        ]
        return shown if all(s["status"] != "running" for s in shown) else None

    shown = wait_until(all_final, 120, "every pipeline run to end", interval=0.5)
    assert [s["status"] for s in shown] == ["succeeded"] * PIPELINE_RUNS
    runs = [r for r in api.runs() if r["pipeline_run"]]
    per_node = Counter((r["pipeline_run"], r["pipeline_node"]) for r in runs)
    assert len(per_node) == PIPELINE_RUNS * len(NODES)
    assert set(per_node.values()) == {1}, [k for k, v in per_node.items() if v > 1]
    for pipeline_run in shown:
        for node in pipeline_run["nodes"]:
            assert node["status"] == "succeeded" and node["run"]
            assert per_node[(pipeline_run["identifier"], node["identifier"])] == 1
    ran = Counter(line.split()[0] for line in journal.read_text().splitlines())
    assert set(ran) == {r["identifier"] for r in runs}
    assert set(ran.values()) == {1}
