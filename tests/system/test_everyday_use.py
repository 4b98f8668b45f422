"""Everyday use with real processes (issue 24): re-running a run with its parameters (a secret
one included), what `--follow` says (each step's start, the failing step and its exit code, why
a run waits), and the Prometheus metrics after runs."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import httpx

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import PYTHON
from tests.support.waiting import wait_until

SECRET = "s3cr3t-rerun-value-9f2c"
DIGEST = """
    import hashlib, sys
    print("digest", hashlib.sha256(sys.argv[1].encode()).hexdigest(), "plain", sys.argv[2])
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def follow(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [PYTHON, "-m", "orchestra", "run", *argv, "--follow"]
    return subprocess.run(
        command, env=cluster.client_env(), capture_output=True, text=True, timeout=120
    )


def scrape(cluster: Cluster) -> str:
    response = httpx.get(
        f"{cluster.url}/metrics", headers={"Authorization": f"Bearer {cluster.admin_token}"}
    )
    assert response.status_code == 200, response.text
    return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series of a Prometheus text exposition, None if absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return None


def test_rerun_copies_the_parameters_and_follow_and_metrics_say_what_happened(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    api = cluster.api
    api.put_job(
        "digest",
        [{"name": "show", "command": [*py(DIGEST), "{parameters[token]}", "{parameters[who]}"]}],
        parameters=[{"key": "token", "secret": True}, {"key": "who", "default": "world"}],
    )
    api.put_job(
        "bad",
        [
            {"name": "prepare", "command": py("print('prepared')")},
            {"name": "test", "command": py("import sys; print('tests fail'); sys.exit(3)")},
            {"name": "never", "command": py("print('not reached')")},
        ],
    )
    api.put_job("nowhere", [py("print('never')")], properties={"gpu": "h100"})

    # Re-run: the same job, the same values (the secret's too, never shown).
    first = api.trigger("digest", parameters={"token": SECRET, "who": "ana"})
    api.wait_for_status(first, "succeeded")
    path = f"/projects/p/runs/{first['identifier']}/rerun"
    answer = api.request("POST", path, 201)
    again = answer.json()
    assert SECRET not in answer.text
    assert again["identifier"] != first["identifier"]
    assert again["job"] == "digest"
    assert again["source"] == {"type": "rerun", "run": first["identifier"]}
    assert again["parameters"] == {"token": "***", "who": "ana"}
    api.wait_for_status(again, "succeeded")
    line = f"digest {digest(SECRET)} plain ana\n"
    assert api.log(first).decode() == line
    assert api.log(again).decode() == line  # the step got the secret's value itself

    # Only a final run is re-run; an unknown run is a 404.
    waiting = api.trigger("nowhere")
    refused = api.request("POST", f"/projects/p/runs/{waiting['identifier']}/rerun", 409)
    assert "final" in refused.json()["detail"]
    api.request("POST", "/projects/p/runs/00000000-0000-0000-0000-000000000000/rerun", 404)

    # --follow: each step's start, then the status, the failing step and its exit code.
    failed = follow(cluster, "trigger", "p", "bad")
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout == "prepared\ntests fail\n"
    lines = failed.stderr.splitlines()
    assert "step 1/3 prepare started on w1" in lines, failed.stderr
    assert "step 2/3 test started on w1" in lines, failed.stderr
    assert not any("never" in line for line in lines), failed.stderr
    (bad_run,) = api.runs(job="bad")
    assert lines[-2:] == [
        f"run {bad_run['identifier']} failed",
        "step 2/3 test failed with exit code 3",
    ], failed.stderr
    # `run log --follow` of a finished run says the same.
    again_followed = follow(cluster, "log", "p", bad_run["identifier"])
    assert again_followed.stderr.splitlines()[-1] == "step 2/3 test failed with exit code 3"

    # A run no worker can take: --follow says why it waits, until it ends.
    err = tmp_path / "follow.err"
    command = [PYTHON, "-m", "orchestra", "run", "log", "p", waiting["identifier"], "--follow"]
    with err.open("w") as stderr:
        follower = subprocess.Popen(
            command, env=cluster.client_env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        wait_until(lambda: "waiting: " in err.read_text(), 30, "the waiting reason")
        text = err.read_text()
        assert "waiting: no worker has the properties gpu=h100" in text, text
        metrics = scrape(cluster)
        assert sample(metrics, "orchestra_runs_pending", project="p") == 1
        assert (sample(metrics, "orchestra_oldest_pending_run_age_seconds") or 0) > 0
        api.cancel(waiting)
        assert follower.wait(timeout=30) == 1
    finally:
        if follower.poll() is None:
            follower.kill()
    assert err.read_text().splitlines()[-1] == f"run {waiting['identifier']} cancelled"

    # The metrics: runs by project, job and status; the instance's gauges; the latencies.
    metrics = scrape(cluster)
    finished = "orchestra_runs_finished_total"
    assert sample(metrics, finished, project="p", job="digest", status="succeeded") == 2
    assert sample(metrics, finished, project="p", job="bad", status="failed") == 1
    assert sample(metrics, finished, project="p", job="nowhere", status="cancelled") == 1
    assert sample(metrics, "orchestra_runs_pending", project="p") is None  # none pending
    assert sample(metrics, "orchestra_oldest_pending_run_age_seconds") == 0
    assert sample(metrics, "orchestra_workers_connected") == 1
    assert sample(metrics, "orchestra_executors_busy") == 0
    assert (sample(metrics, "orchestra_executors") or 0) >= 1
    assert sample(metrics, "orchestra_run_duration_seconds_count", project="p") == 3
    assert sample(metrics, "orchestra_run_queue_seconds_count", project="p") == 3
    for name in (
        "orchestra_dispatch_pass_seconds_count",
        "orchestra_report_seconds_count",
        "orchestra_database_transaction_seconds_count",
    ):
        assert (sample(metrics, name) or 0) > 0, name
