"""Isolation with real servers, workers and steps (docs/isolation.md): what a sandboxed step
cannot do, each next to a control run without the sandbox where it can; limits exceeded and
not; abort of a sandboxed step; the all-in-one instance's local workers; and a worker's token
out of its steps' reach.

The worker's data directories live under /var/tmp here, not under pytest's /tmp: a sandbox has
a private /tmp, which would hide them whatever else it did."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestra.worker.limits import pids_cgroup
from tests.support.accounts import WORKER_USER
from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import Process, orchestra_argv
from tests.support.procfs import command_line, process_stats
from tests.support.waiting import wait_until


def boxed_py(code: str, *arguments: str) -> list[str]:
    """`py`'s command with the interpreter's real path: a sandboxed step has a private /tmp, so
    a virtual environment under /tmp (a CI clone, say) is not there for it; these steps need
    nothing but the standard library."""
    command = py(code, *arguments)
    return [os.path.realpath(command[0]), *command[1:]]


BWRAP = shutil.which("bwrap")
pytestmark = [
    pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed (make test installs it)"),
    pytest.mark.parametrize("engine", ["sqlite"], indirect=True),
]

# What a step can do: read its own journal, write outside its workspace, see the worker's
# processes, connect to the server. Its data directory is two levels above its workspace.
PROBE = """
    import json, os, pathlib, socket, sys
    run, outside, host, port = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    data = pathlib.Path.cwd().parent.parent
    found = {}
    try:
        found["journal"] = "assign" in (data / "runs" / run / "assignment.json").read_text()
    except OSError as exc:
        found["journal"] = exc.strerror
    try:
        (outside / f"written-by-{run}").write_text("escaped")
        found["outside"] = True
    except OSError as exc:
        found["outside"] = exc.strerror
    pathlib.Path("in-workspace").write_text(run)
    pathlib.Path(f"/tmp/orchestra-probe-{run}").write_text(run)
    commands = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                commands.append((entry / "cmdline").read_bytes().replace(b"\\0", b" ").decode())
            except OSError:
                pass
    spawner = ".".join(("orchestra", "worker", "spawner"))  # not in this command line itself
    found["worker_seen"] = any(spawner in c for c in commands)
    found["processes"] = len(commands)
    try:
        socket.create_connection((host, port), timeout=5).close()
        found["network"] = True
    except OSError as exc:
        found["network"] = exc.strerror or str(exc)
    print(json.dumps(found))
"""


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside /tmp, removed afterwards."""
    directory = Path("/var/tmp") / f"orchestra-isolation-{uuid.uuid4().hex}"
    directory.mkdir(mode=0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start_worker(
    cluster: Cluster,
    identifier: str,
    data_dir: Path,
    *arguments: str,
    owner: int | None = None,
    **options: Any,
) -> Process:
    """`orchestra worker` with these further arguments (--sandbox...), its token in a file of
    its own (the `owner`'s), active before this returns."""
    token = data_dir.parent / f"{identifier}.token"
    token.write_text(cluster.worker_token + "\n")
    token.chmod(0o600)
    if owner is not None:
        os.chown(token, owner, owner)
    argv = orchestra_argv("worker", "--url", cluster.url, "--user", WORKER_USER)
    argv += ["--token-file", str(token), "--identifier", identifier]
    argv += ["--data-dir", str(data_dir), *arguments]
    wrapper = options.pop("wrapper", [])
    python = options.pop("python", None)
    if python is not None:
        argv[0] = python
    process = cluster.spawn(cluster.unique(f"worker-{identifier}"), [*wrapper, *argv], **options)
    cluster.wait_for_active(identifier, process)
    return process


def host_and_port(cluster: Cluster) -> tuple[str, str]:
    address = cluster.url.removeprefix("http://")
    host, _, port = address.rpartition(":")
    return host, port


def probe(cluster: Cluster, job: str, outside: Path, **fields: Any) -> tuple[dict[str, Any], str]:
    """Run the probe as job `job` with these fields; what it found, and its run."""
    host, port = host_and_port(cluster)
    command = boxed_py(PROBE, "{run_identifier}", str(outside), host, port)
    cluster.api.put_job(job, [command], **fields)
    run = cluster.api.trigger(job)
    done = cluster.api.wait_for_status(run, "succeeded", timeout=60)
    return json.loads(cluster.api.log(run)), done["identifier"]


def test_a_sandboxed_step_is_refused_what_an_open_one_may_do(
    cluster: Cluster, outside: Path
) -> None:
    cluster.start()
    data_dir = outside / "worker"
    never = start_worker(cluster, "open", outside / "open", "--sandbox", "never")
    found, run = probe(cluster, "open", outside)
    # The control: without the sandbox each of these succeeds.
    assert found["journal"] is True and found["outside"] is True
    assert found["worker_seen"] is True and found["network"] is True
    assert (outside / f"written-by-{run}").read_text() == "escaped"
    assert Path(f"/tmp/orchestra-probe-{run}").exists()
    Path(f"/tmp/orchestra-probe-{run}").unlink()

    # A sandboxed job waits for a worker that can sandbox, and says so.
    host, port = host_and_port(cluster)
    command = boxed_py(PROBE, "{run_identifier}", str(outside), host, port)
    cluster.api.put_job("closed", [command], sandbox={"network": False})
    waiting = cluster.api.trigger("closed")
    assert waiting["warning"] == "no registered worker has the properties sandbox=true"
    reason = wait_until(
        lambda: cluster.api.get_run(waiting).get("waiting_reason"), 30, "a waiting reason"
    )
    assert "no worker can run its steps in a sandbox" in reason
    assert "sandbox" not in (cluster.api.worker("open") or {})["properties"]
    never.stop()
    start_worker(cluster, "boxed", data_dir)

    done = cluster.api.wait_for_status(waiting, "succeeded", timeout=60)
    assert done["worker"] == "boxed"
    found = json.loads(cluster.api.log(waiting))
    run = done["identifier"]
    assert found["journal"] == "No such file or directory"  # the data directory is hidden
    assert found["outside"] == "Read-only file system"
    assert not (outside / f"written-by-{run}").exists()
    assert found["worker_seen"] is False and found["processes"] <= 3  # bwrap, python
    assert found["network"] == "Network is unreachable" or "refused" in found["network"]
    # The workspace is the same directory as without the sandbox; its /tmp is its own.
    assert (data_dir / "workspaces" / "closed" / "in-workspace").read_text() == run
    assert not Path(f"/tmp/orchestra-probe-{run}").exists()

    # With the network on, the sandbox still hides the rest, and the server answers.
    found, run = probe(cluster, "networked", outside, sandbox={"network": True})
    assert found["network"] is True
    assert found["journal"] == "No such file or directory" and found["worker_seen"] is False
    assert found["outside"] == "Read-only file system"


LIMITED = {
    "memory_mb": (64, "x = bytearray(256 << 20)", "x = bytearray(4 << 20)"),
    "open_files": (
        32,
        "files = [open('/dev/null') for _ in range(64)]",
        "files = [open('/dev/null') for _ in range(8)]",
    ),
    "cpu_seconds": (1, "while True: pass", "sum(range(1000))"),
}


def test_each_limit_fails_a_step_that_exceeds_it_and_not_one_within_it(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    runs = {}
    for name, (limit, over, within) in LIMITED.items():
        for sandbox in (None, {}):
            for case, code in (("over", over), ("within", within)):
                job = (
                    f"{name.replace('_', '-')}-{case}-{'boxed' if sandbox is not None else 'open'}"
                )
                cluster.api.put_job(job, [boxed_py(code)], limits={name: limit}, sandbox=sandbox)
                runs[(name, case, sandbox is not None)] = cluster.api.trigger(job)
    for (name, case, boxed), run in runs.items():
        wanted = "failed" if case == "over" else "succeeded"
        done = cluster.api.wait_for_status(run, wanted, timeout=60)
        log = cluster.api.log(run).decode()
        if case == "within":
            continue
        assert done["steps"][0]["status"] == "failed", (name, boxed, done)
        if name == "cpu_seconds":
            assert "exceeded its CPU time limit (limits.cpu_seconds=1)" in log, (boxed, log)
        else:
            assert f"ran with limits.{name}={LIMITED[name][0]}" in log, (name, boxed, log)
            error = "MemoryError" if name == "memory_mb" else "Too many open files"
            assert error in log, (name, boxed, log)


@pytest.mark.skipif(
    pids_cgroup()[0] is None, reason=f"no pids cgroup to count processes: {pids_cgroup()[1]}"
)
def test_a_step_that_starts_more_processes_than_its_limit_fails_and_says_so(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.start_worker("w1")
    many = "import subprocess; [subprocess.Popen(['sleep', '1']) for _ in range(6)]"
    few = "import subprocess; [subprocess.Popen(['sleep', '0.1']).wait() for _ in range(6)]"
    runs = {}
    for sandbox in (None, {}):
        for case, code in (("over", many), ("within", few)):
            job = f"processes-{case}-{'boxed' if sandbox is not None else 'open'}"
            cluster.api.put_job(job, [boxed_py(code)], limits={"processes": 3}, sandbox=sandbox)
            runs[(case, sandbox is not None)] = cluster.api.trigger(job)
    for (case, boxed), run in runs.items():
        cluster.api.wait_for_status(run, "failed" if case == "over" else "succeeded", timeout=60)
        if case == "over":
            log = cluster.api.log(run).decode()
            assert "reached its process limit (limits.processes=3)" in log, (boxed, log)


# A step that starts a child in its process group and a grandchild in a session of its own
# (out of the reach of a signal to the step's group), all carrying a marker, then waits.
ESCAPING_FAMILY = """
    import pathlib, subprocess, sys, time
    marker = sys.argv[1]
    loop = ["-c", "import time\\nwhile True: time.sleep(0.1)", marker]
    subprocess.Popen([sys.executable, *loop])
    subprocess.Popen([sys.executable, *loop], start_new_session=True)
    pathlib.Path("started").write_text("yes")
    while True:
        time.sleep(0.1)
"""


def marked(marker: str) -> list[int]:
    """The live processes whose command line carries `marker`."""
    return [
        pid for pid, fields in process_stats() if fields[0] != b"Z" and marker in command_line(pid)
    ]


def test_abort_of_a_sandboxed_step_leaves_no_process_behind(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    marker = f"orchestra-abort-{uuid.uuid4().hex}"
    cluster.api.put_job("family", [boxed_py(ESCAPING_FAMILY, marker)], sandbox={})
    run = cluster.api.trigger("family")
    cluster.api.wait_for_status(run, "running")
    started = cluster.worker_dir("w1") / "workspaces" / "family" / "started"
    wait_until(started.exists, 30, "the step's family to start")
    assert len(marked(marker)) >= 3  # the step, its child, the escaped grandchild

    assert cluster.api.abort(run).status_code == 200
    done = cluster.api.wait_for_status(run, "aborted", timeout=30)
    assert done["steps"][0]["status"] == "aborted"
    wait_until(lambda: not marked(marker), 10, "every process of the aborted step to end")


def test_local_workers_cannot_read_the_server_s_database(cluster: Cluster, outside: Path) -> None:
    """orchestra server --workers 1: every step runs in a sandbox, which hides the server's
    data directory (its SQLite database) and gets no token; a worker without the sandbox,
    the control, reads the database."""
    data_dir = outside / "server"
    data_dir.mkdir()
    database = data_dir / "orchestra.sqlite"
    source = sqlite3.connect(cluster.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as copy:
        source.backup(copy)
    source.close()
    process, url = cluster.start_role(
        "all-in-one",
        database_url=f"sqlite:///{database}",
        data_dir=data_dir,
        arguments=["--workers", "1"],
    )
    api = cluster.use(url)
    api.put_project("p")
    wait_until(lambda: (api.worker("local-1") or {}).get("is_active"), 60, "local-1")
    assert (api.worker("local-1") or {})["properties"] == {"sandbox": "true"}
    read = """
        import os, sys
        try:
            print(open(sys.argv[1], "rb").read(15).decode())
        except OSError as exc:
            print(exc.strerror)
        print(os.environ.get("ORCHESTRA_TOKEN"), os.environ.get("ORCHESTRA_DATABASE_URL"))
    """
    api.put_job("peek", [boxed_py(read, str(database))])  # the job asks for no sandbox
    run = api.trigger("peek")
    done = api.wait_for_status(run, "succeeded", timeout=60)
    assert done["worker"] == "local-1"
    assert api.log(run).decode().splitlines() == ["No such file or directory", "None None"]

    local = [pid for pid, fields in process_stats() if int(fields[1]) == process.pid]
    for pid in local:
        assert "ORCHESTRA_TOKEN" not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
        assert not any(a.startswith("orc_") for a in command_line(pid))

    cluster.start_worker("open", {"where": "outside"}, data_dir=outside / "open")
    api.put_job("peek-open", [boxed_py(read, str(database))], properties={"where": "outside"})
    run = api.trigger("peek-open")
    api.wait_for_status(run, "succeeded", timeout=60)
    assert api.log(run).decode().splitlines()[0] == "SQLite format 3"


# What a step of the worker's own user can read of the agent (its parent's parent: the step's
# parent is the spawner): not its environment, nor its memory.
AGENT = """
    import json, os
    spawner = os.getppid()
    stat = open(f"/proc/{spawner}/stat").read()
    agent = int(stat.rsplit(") ", 1)[1].split()[1])
    found = {"uid": os.getuid()}
    for name, pid, part in (
        ("agent", agent, "environ"), ("agent", agent, "mem"), ("spawner", spawner, "environ")
    ):
        try:
            open(f"/proc/{pid}/{part}", "rb").close()
            found[f"{name} {part}"] = "read"
        except OSError as exc:
            found[f"{name} {part}"] = exc.strerror
    print(json.dumps(found))
"""
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def python_for_nobody() -> tuple[str, dict[str, str]]:
    """A Python `nobody` may run, and start again from itself, with Orchestra importable: this
    one, or (where this one lies under a directory nobody may search, as pyenv's under /root)
    the system's of the same version, given this one's packages."""
    check = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True)"
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    packages = {
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p.startswith("/") and Path(p).is_dir())
    }
    for python, env in ((sys.executable, {}), (system, packages)):
        done = subprocess.run(
            [*AS_NOBODY, python, "-c", f"import orchestra; {check}"],
            env={"PATH": os.environ["PATH"], **env},
            cwd="/",
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return python, env
    pytest.skip("no Python that nobody may run with Orchestra importable")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run a worker as nobody")
def test_a_step_of_the_worker_s_own_user_cannot_read_the_agent_s_environment(
    cluster: Cluster, outside: Path
) -> None:
    """A worker running as `nobody`: its steps run as `nobody` too, and may read the
    spawner's environment (the same user may: the control), not the agent's, which is not
    dumpable (nor its memory)."""
    python, env = python_for_nobody()
    cluster.start()
    data_dir = outside / "nobody"
    data_dir.mkdir()
    os.chown(data_dir, NOBODY, NOBODY)
    start_worker(
        cluster, "nobody", data_dir, owner=NOBODY, wrapper=AS_NOBODY, python=python, settings=env
    )
    cluster.api.put_job(
        "agent", [[python, "-c", textwrap.dedent(AGENT).replace("{", "{{").replace("}", "}}")]]
    )
    run = cluster.api.trigger("agent")
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    found = json.loads(cluster.api.log(run))
    assert found == {
        "uid": NOBODY,
        "agent environ": "Permission denied",
        "agent mem": "Permission denied",
        "spawner environ": "read",
    }


def test_a_token_given_in_sight_is_taken_out_of_sight(cluster: Cluster) -> None:
    """A worker given its token on its command line or in its environment starts itself again
    with the token on a pipe: neither its command line nor its environment holds it then."""
    cluster.start()
    worker = cluster.start_worker("w1", settings={"ORCHESTRA_TOKEN": cluster.worker_token})
    arguments = command_line(worker.pid)
    assert cluster.worker_token not in " ".join(arguments)
    assert "--token-file" in arguments and "--token" not in arguments
    environment = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
    assert not any(v.startswith(b"ORCHESTRA_TOKEN=") for v in environment)
    assert "warning: --token shows the token to every user of this machine (ps)" in worker.log()
