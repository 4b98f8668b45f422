"""Results with real servers and workers: each step writes KEY=VALUE lines to the file named
by ORCHESTRA_RESULTS; the run shows every step's results (a later key replacing an earlier
one, a failed step's kept); a malformed line, or more than the run's limit, fails the step with
the log saying why; sandboxed or not, as another OS user, and across an agent's restart."""

from __future__ import annotations

import os
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestra.domain.results import MAX_RESULTS_BYTES
from tests.support.accounts import WORKER_USER
from tests.support.cluster import Cluster
from tests.support.jobs import WAIT_FOR_FILE, py
from tests.support.processes import orchestra_argv
from tests.support.waiting import wait_until

# Writes each argument as a line to the results file, then exits with the status in
# RESULTS_EXIT (0 by default).
WRITE = """
    import os, sys
    with open(os.environ["ORCHESTRA_RESULTS"], "a") as handle:
        for line in sys.argv[1:]:
            handle.write(line + "\\n")
    print("wrote", len(sys.argv) - 1, "lines")
    sys.exit(int(os.environ.get("RESULTS_EXIT", "0")))
"""
BWRAP = shutil.which("bwrap")
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run steps as nobody")


def write(*lines: str, exit_code: int = 0, name: str | None = None) -> dict[str, object]:
    """A step writing these lines to its results file (its command is the interpreter's real
    path: a sandboxed step has a private /tmp)."""
    command = py(WRITE, *lines)
    command[0] = os.path.realpath(command[0])
    step: dict[str, object] = {"name": name or f"write-{uuid.uuid4().hex[:6]}", "command": command}
    if exit_code:
        command.insert(0, f"RESULTS_EXIT={exit_code}")
        command.insert(0, "env")
    return step


def test_steps_results_merge_and_a_failed_step_s_are_kept(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job(
        "two",
        [
            write("package=p-1.0.tar.gz", "version=1.0", "url=https://x/?a=1&b=2"),
            write("version=1.1", "", "empty="),
        ],
    )
    cluster.api.put_job(
        "failing", [write("first=1"), write("second=2", "first=one", exit_code=3), write("x=3")]
    )
    two = cluster.api.trigger("two")
    failing = cluster.api.trigger("failing")

    done = cluster.api.wait_for_status(two, "succeeded", timeout=60)
    assert done["results"] == {
        "package": "p-1.0.tar.gz",
        "version": "1.1",
        "url": "https://x/?a=1&b=2",
        "empty": "",
    }
    failed = cluster.api.wait_for_status(failing, "failed", timeout=60)
    assert [s["status"] for s in failed["steps"]] == ["succeeded", "failed", "skipped"]
    assert failed["results"] == {"first": "one", "second": "2"}
    # A run whose steps write nothing shows none.
    cluster.api.put_job("none", [py("print('nothing')")])
    quiet = cluster.api.wait_for_status(cluster.api.trigger("none"), "succeeded", timeout=60)
    assert quiet["results"] == {}


def test_a_malformed_line_or_too_much_fails_the_step_and_the_log_says_why(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    hidden = "hidden-" + "z" * 60
    cluster.api.put_job("bad-line", [write("ok=1", f"no equals sign {hidden}"), write("never=1")])
    cluster.api.put_job("bad-key", [write("ok=1"), write("not a key=1")])
    half = "v" * (MAX_RESULTS_BYTES // 2)
    cluster.api.put_job("too-much", [write(f"a={half}"), write(f"b={half}")])
    runs = {job: cluster.api.trigger(job) for job in ("bad-line", "bad-key", "too-much")}

    bad_line = cluster.api.wait_for_status(runs["bad-line"], "failed", timeout=60)
    assert [s["status"] for s in bad_line["steps"]] == ["failed", "skipped"]
    assert bad_line["steps"][0]["exit_code"] == 0
    assert bad_line["results"] == {}
    log = cluster.api.log(runs["bad-line"]).decode()
    assert "[orchestra] results refused: line 2 of the results file is not KEY=VALUE" in log
    assert hidden not in log

    bad_key = cluster.api.wait_for_status(runs["bad-key"], "failed", timeout=60)
    assert [s["status"] for s in bad_key["steps"]] == ["succeeded", "failed"]
    assert bad_key["results"] == {"ok": "1"}
    assert (
        "line 1 of the results file: the key 'not a key'"
        in cluster.api.log(runs["bad-key"], step=1).decode()
    )

    too_much = cluster.api.wait_for_status(runs["too-much"], "failed", timeout=60)
    assert [s["status"] for s in too_much["steps"]] == ["succeeded", "failed"]
    assert too_much["results"] == {"a": half}
    assert (
        f"more than its limit of {MAX_RESULTS_BYTES}"
        in cluster.api.log(runs["too-much"], step=1).decode()
    )


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed (make test installs it)")
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_sandboxed_step_writes_its_results(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job(
        "boxed", [write("where=boxed"), write("again=1")], sandbox={"network": False}
    )
    done = cluster.api.wait_for_status(cluster.api.trigger("boxed"), "succeeded", timeout=60)
    assert done["results"] == {"where": "boxed", "again": "1"}


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory under /var/tmp (mode 0755, which `nobody` may traverse), removed after."""
    directory = Path("/var/tmp") / f"orchestra-results-{uuid.uuid4().hex}"
    directory.mkdir()
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@AS_ROOT
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_steps_run_as_another_user_write_their_results(cluster: Cluster, scratch: Path) -> None:
    """orchestra worker --run-as nobody: the step (sandboxed or not) can write its results
    file, and cannot list the directory that holds the results files (in a sandbox it sees
    its own file alone there)."""
    cluster.start()
    data_dir = scratch / "w"
    token = scratch / "w.token"
    token.write_text(cluster.worker_token + "\n")
    token.chmod(0o600)
    argv = orchestra_argv("worker", "--url", cluster.url, "--user", WORKER_USER)
    argv += ["--token-file", str(token), "--identifier", "w", "--data-dir", str(data_dir)]
    argv += ["--run-as", "nobody"]
    if BWRAP is not None:
        argv += ["--sandbox", "auto"]
    process = cluster.spawn(cluster.unique("worker-w"), argv)
    cluster.wait_for_active("w", process)
    # A shell, not this Python: nobody may not reach the interpreter of a virtual environment.
    probe = [
        "sh",
        "-c",
        'l=$(ls "$(dirname "$ORCHESTRA_RESULTS")" 2>/dev/null) || l=not-listed; '
        'printf "uid=%s\\nlisted=%s\\n" "$(id -u)" "$l" > "$ORCHESTRA_RESULTS"',
    ]
    jobs: dict[str, dict[str, Any]] = {"open": {}}
    if BWRAP is not None:
        jobs["boxed"] = {"sandbox": {"network": False}}
    for job, fields in jobs.items():
        cluster.api.put_job(job, [probe], **fields)
        run = cluster.api.trigger(job)
        done = cluster.api.wait_for_status(run, "succeeded", timeout=60)
        # Open, the directory cannot be listed; in the sandbox, it holds the step's file alone.
        listed = "not-listed" if job == "open" else f"{done['identifier']}.0"
        assert done["results"] == {"uid": "65534", "listed": listed}, (job, done)
    results_dir = data_dir / "results"
    assert results_dir.stat().st_mode & 0o777 == 0o711
    assert list(results_dir.iterdir()) == []  # each file removed once read


def test_results_written_before_the_agent_restarts_are_kept(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The agent is killed while a step that wrote results still runs, and started again: it
    reads the step's file when the step ends, and the run shows what it wrote."""
    cluster.start()
    worker = cluster.start_worker("w1")
    go = tmp_path / "go"
    wrote = tmp_path / "wrote"
    step = py(
        textwrap.dedent(
            """
            import os, pathlib, sys
            pathlib.Path(os.environ["ORCHESTRA_RESULTS"]).write_text("before=restart\\n")
            pathlib.Path(sys.argv[2]).touch()
            """
        )
        + textwrap.dedent(WAIT_FOR_FILE),
        str(go),
        str(wrote),
    )
    cluster.api.put_job("j", [write("first=1"), step])
    run = cluster.api.trigger("j")
    wait_until(wrote.exists, 60, "the second step to write its results")
    worker.kill()  # the agent alone: its spawner and the step keep running
    assert cluster.api.get_run(run)["status"] == "running"
    cluster.start_worker("w1")
    go.touch()
    done = cluster.api.wait_for_status(run, "succeeded", timeout=60)
    assert done["results"] == {"first": "1", "before": "restart"}
