"""Job controls with real servers, workers and processes: timeouts, retries, concurrency caps,
forced statuses and secret parameters masked in the log."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.procfs import process_gone
from tests.support.waiting import wait_until

SLEEPER = """
    import os, pathlib, sys, time
    pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
    print("sleeping", flush=True)
    time.sleep(120)
"""


def test_run_timeout_aborts_the_run_and_says_so(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w")
    pid_file = tmp_path / "pid"
    cluster.api.put_job("slow", [py(SLEEPER, str(pid_file))], timeout=2)
    run = cluster.api.trigger("slow")
    ended = cluster.api.wait_for_status(run, "aborted", timeout=30)
    assert ended["reason"].startswith("timed out")
    assert "timeout of 2 s" in ended["reason"]
    pid = int(pid_file.read_text())
    wait_until(lambda: process_gone(pid), 15, "the timed-out process to be gone")


def test_step_timeout_names_the_step(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w")
    steps = [
        {"name": "quick", "command": py("print('ok')")},
        {"name": "stuck", "command": py(SLEEPER, str(tmp_path / "pid")), "timeout": 1},
        {"name": "never", "command": py("print('never')")},
    ]
    cluster.api.put_job("steps", steps)
    run = cluster.api.trigger("steps")
    ended = cluster.api.wait_for_status(run, "aborted", timeout=30)
    assert "step 'stuck'" in ended["reason"]
    assert [s["status"] for s in ended["steps"]] == ["succeeded", "aborted", "skipped"]


def test_retry_runs_a_linked_attempt_until_it_succeeds(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w")
    marker = tmp_path / "tried"
    flaky = """
        import pathlib, sys
        marker = pathlib.Path(sys.argv[1])
        if not marker.exists():
            marker.write_text("once")
            sys.exit("first attempt fails")
        print("second attempt works")
    """
    cluster.api.put_job(
        "flaky", [py(flaky, str(marker))], retry={"count": 3, "delay": 0.2, "on": ["failed"]}
    )
    first = cluster.api.trigger("flaky")
    cluster.api.wait_for_status(first, "failed")

    def retried() -> dict[str, object] | None:
        runs = [r for r in cluster.api.runs(job="flaky") if r["retry_of"] == first["identifier"]]
        return runs[0] if runs else None

    second = wait_until(retried, 30, "the retry")
    assert second["attempt"] == 2
    done = cluster.api.wait_for_status(second, "succeeded")
    assert cluster.api.log(done) == b"second attempt works\n"
    assert len(cluster.api.runs(job="flaky")) == 2  # succeeded: no third attempt
    assert cluster.api.get_run(first)["retried_by"] == second["identifier"]
    assert done["retried_by"] is None


def test_concurrency_cap_keeps_runs_of_a_job_apart(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    for name in ("a", "b"):
        cluster.start_worker(name, executors=2)
    journal = tmp_path / "journal"
    step = """
        import os, sys, time
        with open(sys.argv[1], "a") as f:
            f.write(f"start {os.environ['ORCHESTRA_RUN']} {time.time()}\\n")
        time.sleep(0.5)
        with open(sys.argv[1], "a") as f:
            f.write(f"end {os.environ['ORCHESTRA_RUN']} {time.time()}\\n")
    """
    cluster.api.put_job("single", [py(step, str(journal))], concurrency=1)
    runs = [cluster.api.trigger("single") for _ in range(3)]
    for run in runs:
        cluster.api.wait_for_status(run, "succeeded", timeout=60)
    events = [line.split() for line in journal.read_text().splitlines()]
    assert len(events) == 6
    running = 0
    for kind, _run, _at in sorted(events, key=lambda e: float(e[2])):
        running += 1 if kind == "start" else -1
        assert running <= 1, events


def test_force_ends_a_run_whose_worker_does_not_answer(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    worker = cluster.start_worker("w")
    pid_file = tmp_path / "pid"
    cluster.api.put_job("stuck", [py(SLEEPER, str(pid_file))])
    run = cluster.api.trigger("stuck")
    cluster.api.wait_for_status(run, "running")
    wait_until(pid_file.exists, 30, "the job to start")
    os.kill(worker.pid, 19)  # SIGSTOP: the agent stops answering
    try:
        response = cluster.api.request(
            "POST",
            f"/projects/p/runs/{run['identifier']}/force",
            200,
            json={"status": "exception", "reason": "the host is unreachable"},
        )
        forced = response.json()
        assert forced["status"] == "exception"
        assert forced["forced_by"] == "admin"
        assert forced["reason"] == "forced by admin: the host is unreachable"
    finally:
        os.kill(worker.pid, 18)  # SIGCONT
    # Back, the worker is told to drop the run: its process goes, the status stays.
    pid = int(pid_file.read_text())
    wait_until(lambda: process_gone(pid), 30, "the forced run's process to be gone")
    assert cluster.api.get_run(run)["status"] == "exception"


def test_secret_parameter_is_masked_in_the_log_even_split_across_writes(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.start_worker("w")
    writer = """
        import sys, time
        secret = sys.argv[1]
        print("whole:", secret, flush=True)
        sys.stdout.write("split: " + secret[:5]); sys.stdout.flush()
        time.sleep(0.3)
        print(secret[5:], flush=True)
        print("done")
    """
    cluster.api.put_job(
        "secretive",
        [py(writer, "{parameters[token]}")],
        parameters=[{"key": "token", "secret": True}],
    )
    run = cluster.api.trigger("secretive", parameters={"token": "s3cr3t-t0ken-value"})
    assert run["parameters"] == {"token": "***"}
    cluster.api.wait_for_status(run, "succeeded")
    log = cluster.api.log(run).decode()
    assert "s3cr3t" not in log and "t0ken" not in log
    assert log == "whole: " + "*" * 18 + "\nsplit: " + "*" * 18 + "\ndone\n"


def test_higher_priority_runs_start_first(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w")
    gate = tmp_path / "gate"
    order = tmp_path / "order"
    blocker = """
        import pathlib, sys, time
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.05)
    """
    note = "import os, sys\nopen(sys.argv[1], 'a').write(os.environ['ORCHESTRA_RUN'] + '\\n')"
    cluster.api.put_job("block", [py(blocker, str(gate))])
    cluster.api.put_job("note", [py(note, str(order))])
    first = cluster.api.trigger("block")
    cluster.api.wait_for_status(first, "running")  # the only executor is busy
    low = cluster.api.trigger("note")
    high = cluster.api.request(
        "POST", "/projects/p/jobs/note/trigger", 201, json={"priority": 10}
    ).json()
    assert high["priority"] == 10
    gate.write_text("go")
    for run in (low, high):
        cluster.api.wait_for_status(run, "succeeded")
    assert order.read_text().split() == [high["identifier"], low["identifier"]]


def test_job_expiry_and_fail_fast_warning(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w")
    cluster.api.put_job("nowhere", [py("print('never')")], properties={"os": "plan9"}, expiry=2)
    run = cluster.api.trigger("nowhere")
    assert run["warning"] == "no registered worker has the properties os=plan9"
    ended = cluster.api.wait_for_status(run, "cancelled", timeout=30)
    assert ended["reason"].startswith("expired")


def test_master_deletes_runs_past_their_jobs_retention(cluster: Cluster) -> None:
    cluster.start(settings={"ORCHESTRA_RETENTION_INTERVAL": "0.2"})
    cluster.start_worker("w")
    cluster.api.put_job("kept", [py("print('kept')")], retention={"runs": 2})
    cluster.api.put_job("forever", [py("print('forever')")])
    runs = [cluster.api.trigger(job) for job in ("kept", "forever") * 4]
    for run in runs:
        cluster.api.wait_for_status(run, "succeeded")
    newest = {r["identifier"] for r in runs[-4::2]}

    def swept() -> bool:
        return {r["identifier"] for r in cluster.api.runs(job="kept")} == newest

    wait_until(swept, 30, "the two newest runs of `kept` to be all that is left")
    assert len(cluster.api.runs(job="forever")) == 4
    gone = runs[0]["identifier"]
    assert cluster.api.request("GET", f"/projects/p/runs/{gone}").status_code == 404
    assert cluster.api.request("GET", f"/projects/p/runs/{gone}/log").status_code == 404
