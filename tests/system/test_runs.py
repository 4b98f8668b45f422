"""Runs from trigger to result with real processes: output, failures, commands that cannot
start, parameters that stay one argument, the steps' environment, and the CLI's --follow."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.accounts import WORKER_USER
from tests.support.cluster import Cluster
from tests.support.jobs import numbered_lines, py
from tests.support.processes import PYTHON

PRINT_LINES = """
    import sys
    first, last = int(sys.argv[1]), int(sys.argv[2])
    for n in range(first, last + 1):
        print(f"line {n}")
"""


def test_run_succeeds_with_every_line_in_order(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job(
        "j",
        [
            {"name": "first", "command": py(PRINT_LINES, "1", "250")},
            {"name": "second", "command": py(PRINT_LINES, "251", "500")},
        ],
    )

    run = cluster.api.trigger("j")
    assert run["status"] == "pending"
    done = cluster.api.wait_for_status(run, "succeeded")

    assert [s["status"] for s in done["steps"]] == ["succeeded", "succeeded"]
    assert [s["exit_code"] for s in done["steps"]] == [0, 0]
    assert done["worker"] == "w1"
    assert cluster.api.log(run) == numbered_lines(1, 500).encode()
    assert cluster.api.log(run, step=0) == numbered_lines(1, 250).encode()
    assert cluster.api.log(run, step=1) == numbered_lines(251, 500).encode()
    head = len(numbered_lines(1, 100))
    assert cluster.api.log(run, offset=head) == numbered_lines(101, 500).encode()
    assert cluster.api.log(run, step=1, offset=len("line 251\n")) == (
        numbered_lines(252, 500).encode()
    )


def test_run_failing_step_fails_run_and_skips_later_steps(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w1")
    never = tmp_path / "third-step-ran"
    cluster.api.put_job(
        "j",
        [
            py("print('first step')"),
            py("import sys; print('second step fails'); sys.exit(3)"),
            py(
                "import pathlib, sys; pathlib.Path(sys.argv[1]).touch(); print('third')", str(never)
            ),
        ],
    )

    run = cluster.api.trigger("j")
    done = cluster.api.wait_for_status(run, "failed")

    assert [s["status"] for s in done["steps"]] == ["succeeded", "failed", "skipped"]
    assert done["steps"][1]["exit_code"] == 3
    assert done["steps"][2]["start_date"] is None
    assert cluster.api.log(run) == b"first step\nsecond step fails\n"
    assert not never.exists()


def test_run_command_that_cannot_start_ends_exception(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    missing = "/nonexistent-orchestra-dir/no-such-program"
    cluster.api.put_job("j", [[missing, "--flag"], py("print('after')")])

    run = cluster.api.trigger("j")
    done = cluster.api.wait_for_status(run, "exception")

    assert [s["status"] for s in done["steps"]] == ["exception", "skipped"]
    step_log = cluster.api.log(run, step=0).decode()
    assert "no-such-program" in step_log
    assert "after" not in cluster.api.log(run).decode()


def test_run_parameter_value_stays_one_argument_without_shell(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    markers = [tmp_path / f"marker-{n}" for n in range(5)]
    value = (
        f"two words; touch {markers[0]} $(touch {markers[1]}) `touch {markers[2]}` "
        f"&& touch {markers[3]} | tee {markers[4]} 'single' \"double\" {{workspace}} * ~"
    )
    cluster.api.put_job(
        "j",
        [py("import json, sys; print(json.dumps(sys.argv[1:]))", "{parameters[value]}")],
        parameters=[{"key": "value"}],
    )

    run = cluster.api.trigger("j", parameters={"value": value})
    done = cluster.api.wait_for_status(run, "succeeded")

    assert done["parameters"] == {"value": value}
    assert json.loads(cluster.api.log(run)) == [value]
    assert [m for m in markers if m.exists()] == []


def test_run_steps_get_orchestra_environment(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    show = """
        import json, os, urllib.request
        names = ["ORCHESTRA_RUN", "ORCHESTRA_PROJECT", "ORCHESTRA_JOB", "ORCHESTRA_URL"]
        seen = {name: os.environ.get(name) for name in names}
        with urllib.request.urlopen(seen["ORCHESTRA_URL"] + "/api/v1/health") as answer:
            seen["health"] = answer.status
        print(json.dumps(seen))
    """
    cluster.api.put_job("j", [py(show), py(show)])

    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded")

    expected = {
        "ORCHESTRA_RUN": run["identifier"],
        "ORCHESTRA_PROJECT": "p",
        "ORCHESTRA_JOB": "j",
        "ORCHESTRA_URL": cluster.url,
        "health": 200,
    }
    for step in (0, 1):
        assert json.loads(cluster.api.log(run, step=step)) == expected


def test_steps_are_scheduled_as_usual_though_the_agent_yields_on_wakeup(
    cluster: Cluster,
) -> None:
    """The agent runs as SCHED_BATCH (waking it preempts nobody); the steps it starts do not
    inherit that: a job's processes are scheduled like any other."""
    cluster.start()
    agent = cluster.start_worker("w1")
    show = """
        import os
        print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
    """
    cluster.api.put_job("j", [py(show)])

    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded")

    assert os.sched_getscheduler(agent.popen.pid) == os.SCHED_BATCH
    expected = f"{os.SCHED_OTHER} {os.getpriority(os.PRIO_PROCESS, 0)}"
    assert cluster.api.log(run).decode().split() == expected.split()


def test_steps_never_see_the_workers_token(cluster: Cluster) -> None:
    """A worker given its token in the environment keeps it to itself: a job's step inherits
    the rest of the worker's environment, not ORCHESTRA_TOKEN."""
    cluster.start()
    argv = [PYTHON, "-m", "orchestra", "worker", "--url", cluster.url, "--user", WORKER_USER]
    argv += ["--identifier", "w1", "--data-dir", str(cluster.worker_dir("w1"))]
    settings = {"ORCHESTRA_TOKEN": cluster.worker_token, "SHARED_WITH_STEPS": "yes"}
    worker = cluster.spawn("worker-env", argv, settings)
    cluster.wait_for_active("w1", worker)
    show = """
        import json, os
        print(json.dumps({k: os.environ.get(k) for k in ("ORCHESTRA_TOKEN", "SHARED_WITH_STEPS")}))
    """
    cluster.api.put_job("j", [py(show)])

    run = cluster.api.trigger("j")
    cluster.api.wait_for_status(run, "succeeded")

    assert json.loads(cluster.api.log(run)) == {"ORCHESTRA_TOKEN": None, "SHARED_WITH_STEPS": "yes"}


def trigger_and_follow(cluster: Cluster, job: str) -> subprocess.CompletedProcess[str]:
    """`orchestra run trigger p JOB --follow`, to its end."""
    argv = [PYTHON, "-m", "orchestra", "run", "trigger", "p", job, "--follow"]
    return subprocess.run(
        argv, env=cluster.client_env(), capture_output=True, text=True, timeout=120
    )


def test_cli_trigger_follow_exit_status_follows_run_result(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job("good", [py(PRINT_LINES, "1", "30"), py("print('good end')")])
    cluster.api.put_job("bad", [py("import sys; print('bad output'); sys.exit(2)")])

    good = trigger_and_follow(cluster, "good")
    assert good.returncode == 0, good.stderr
    assert good.stdout == numbered_lines(1, 30) + "good end\n"

    bad = trigger_and_follow(cluster, "bad")
    assert bad.returncode != 0
    assert "bad output" in bad.stdout
    assert [r["status"] for r in cluster.api.runs(job="bad")] == ["failed"]


def test_cli_trigger_follow_follows_retries_to_the_last_attempt(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    flaky = """
        import pathlib, sys
        marker = pathlib.Path(sys.argv[1])
        if not marker.exists():
            marker.write_text("once")
            print("first attempt fails", flush=True)
            sys.exit(1)
        print("second attempt works")
    """
    retry = {"count": 2, "delay": 0.1, "on": ["failed"]}
    cluster.api.put_job("flaky", [py(flaky, str(tmp_path / "tried"))], retry=retry)
    cluster.api.put_job("doomed", [py("print('no luck'); raise SystemExit(3)")], retry=retry)

    recovered = trigger_and_follow(cluster, "flaky")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout == "first attempt fails\nsecond attempt works\n"
    first, second = sorted(cluster.api.runs(job="flaky"), key=lambda r: r["attempt"])
    ends = [line for line in recovered.stderr.splitlines() if line.startswith("run ")]
    assert ends[1:] == [
        f"run {first['identifier']} failed",
        f"run {second['identifier']} succeeded",
    ], recovered.stderr
    assert f"attempt 2 is run {second['identifier']}" in recovered.stderr

    given_up = trigger_and_follow(cluster, "doomed")
    assert given_up.returncode == 1, given_up.stderr
    assert given_up.stdout == "no luck\n" * 3  # the run and its two retries
    assert [r["status"] for r in cluster.api.runs(job="doomed")] == ["failed"] * 3
