"""The server's and workers' files out of other users' and steps' reach (docs/security.md,
"Local workers, files and OS users"): the server's data directory and files private, local
workers' data beside it and not in it, journals private and without secret values, a step's
output masked before it reaches the disk, a worker restarted during a run with secrets, and
steps run as another OS user (`--run-as`, `--worker-run-as`).

Data directories live under /var/tmp here, which every user may traverse (pytest's /tmp
directory is root's alone, which would keep `nobody` out whatever Orchestra did)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestra.worker.journal import WITHHELD_REASON
from tests.support.accounts import WORKER_USER
from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import Process, orchestra_argv
from tests.support.waiting import wait_until

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
NOBODY = 65534
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run steps as nobody")
SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory under /var/tmp (mode 0755), removed afterwards."""
    directory = Path("/var/tmp") / f"orchestra-files-{uuid.uuid4().hex}"
    directory.mkdir()
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def copy_database(cluster: Cluster, data_dir: Path) -> Path:
    """The cluster's database (with its users) copied into `data_dir`, readable by anyone."""
    data_dir.mkdir(exist_ok=True)
    database = data_dir / "orchestra.sqlite"
    source = sqlite3.connect(cluster.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as copy:
        source.backup(copy)
    source.close()
    database.chmod(0o644)
    return database


def start_all_in_one(
    cluster: Cluster, data_dir: Path, database: Path, *arguments: str
) -> tuple[Process, str]:
    process, url = cluster.start_role(
        cluster.unique("all-in-one"),
        database_url=f"sqlite:///{database}",
        data_dir=data_dir,
        arguments=["--workers", "1", *arguments],
    )
    api = cluster.use(url)
    api.put_project("p")
    wait_until(lambda: (api.worker("local-1") or {}).get("is_active"), 60, "local-1 active")
    return process, url


def test_the_server_s_files_become_private_and_local_workers_keep_their_data_beside(
    cluster: Cluster, scratch: Path
) -> None:
    """A data directory open to everyone, its database and a cli.env readable by anyone:
    the server makes them its own (0700, 0600) and says so; its local worker keeps its data
    in <data dir>-workers, not in the server's, and the log says what its steps can reach."""
    data_dir = scratch / "server"
    database = copy_database(cluster, data_dir)
    data_dir.chmod(0o755)
    env_file = data_dir / "cli.env"
    env_file.write_text("export ORCHESTRA_TOKEN=not-for-other-users\n")
    env_file.chmod(0o644)
    process, _url = start_all_in_one(cluster, data_dir, database, "--worker-sandbox", "never")

    assert mode(data_dir) == 0o700
    assert mode(env_file) == 0o600
    for path in data_dir.iterdir():
        assert mode(path) & 0o077 == 0, f"{path} is open to other users: {mode(path):o}"
    log = process.log()
    assert "made the server's files private" in log and str(env_file) in log
    assert "as the server's own OS user, WITHOUT a sandbox" in log
    assert "they can read and write whatever the server can" in log

    cluster.api.put_job("where", [py("import os; print(os.getcwd())")])
    run = cluster.api.trigger("where")
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    workspace = Path(cluster.api.log(run).decode().strip())
    workers_dir = scratch / "server-workers"
    assert workers_dir / "local-1" in workspace.parents
    assert not (data_dir / "workers").exists()
    assert mode(workers_dir) == 0o700 and mode(workers_dir / "local-1") == 0o700


def test_a_worker_s_journal_is_private_and_holds_no_secret_value(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A step prints a secret parameter, whole and split across two writes: the journal's
    files on the worker's disk (the step's log, the assignment) hold it masked, and are the
    worker's alone. The agent killed and started again in the middle of the run: the running
    step goes on masked, the next one, which would need the values the worker did not keep,
    ends `exception` and says why."""
    cluster.start()
    data_dir = cluster.worker_dir("w1")
    worker = cluster.start_worker("w1", data_dir=data_dir)
    gate = tmp_path / "gate"
    writer = """
        import pathlib, sys, time
        secret, gate = sys.argv[1], pathlib.Path(sys.argv[2])
        print("whole:", secret, flush=True)
        sys.stdout.write("split: " + secret[:5]); sys.stdout.flush()
        time.sleep(0.3)
        print(secret[5:], flush=True)
        print("-" * 40, flush=True)
        print("=" * 80, flush=True)  # the last bytes are held back until more come
        deadline = time.monotonic() + 90
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print("after:", secret, flush=True)
    """
    cluster.api.put_job(
        "secretive",
        [py(writer, "{parameters[token]}", str(gate)), py("print('second')")],
        parameters=[{"key": "token", "secret": True}],
    )
    run = cluster.api.trigger("secretive", parameters={"token": SECRET})
    masked = "*" * len(SECRET)
    wait_until(lambda: b"-" * 40 in cluster.api.log(run), 30, "the step's first lines")
    assert (
        cluster.api.log(run).decode().startswith(f"whole: {masked}\nsplit: {masked}\n{'-' * 40}\n")
    )

    journal = data_dir / "runs" / run["identifier"]
    on_disk = sorted(p.name for p in journal.iterdir())
    assert {"assignment.json", "events.jsonl", "step-0.log"} <= set(on_disk), on_disk
    for path in journal.iterdir():
        assert SECRET.encode() not in path.read_bytes(), f"{path.name} holds the secret"
        assert mode(path) == 0o600, f"{path.name}: {mode(path):o}"
    assert masked in (journal / "step-0.log").read_text()
    for directory in (data_dir, data_dir / "runs", journal):
        assert mode(directory) == 0o700, f"{directory}: {mode(directory):o}"

    worker.kill()  # the agent alone: its spawner and the step go on
    cluster.start_worker("w1", data_dir=data_dir)
    gate.write_text("go")
    done = cluster.api.wait_for_status(run, "exception", timeout=60)
    assert [s["status"] for s in done["steps"]] == ["succeeded", "exception"]
    log = cluster.api.log(run).decode()
    assert SECRET not in log and f"after: {masked}\n" in log
    assert WITHHELD_REASON in cluster.api.log(run, step=1).decode()
    assert "second" not in log


def run_as_nobody_probe(runs: str, database: str) -> list[str]:
    """A shell step: its uid, whether it may read `database` and list the worker's `runs`
    directory, and whether it may write in its workspace."""
    script = (
        "id -u; "
        f"if cat {database} >/dev/null 2>&1; then echo database-read; "
        "else echo database-denied; fi; "
        f"if ls {runs} >/dev/null 2>&1; then echo runs-listed; else echo runs-denied; fi; "
        "if touch written 2>/dev/null; then echo workspace-written; fi"
    )
    return ["sh", "-c", script.replace("{", "{{").replace("}", "}}")]


@AS_ROOT
def test_local_workers_run_their_steps_as_another_user(cluster: Cluster, scratch: Path) -> None:
    """orchestra server --workers 1 --worker-run-as nobody: a step, sandboxed or not, runs as
    nobody, writes in its workspace, and can neither read the server's database nor list its
    worker's journals; the same step of a worker without --run-as (root) reads both."""
    data_dir = scratch / "server"
    database = copy_database(cluster, data_dir)
    process, _url = start_all_in_one(
        cluster, data_dir, database, "--worker-sandbox", "auto", "--worker-run-as", "nobody"
    )
    assert "run their steps as the OS user nobody" in process.log()
    runs = scratch / "server-workers" / "local-1" / "runs"
    probe = run_as_nobody_probe(str(runs), str(database))
    expected = [str(NOBODY), "database-denied", "runs-denied", "workspace-written"]
    fields = {"open": {}, "boxed": {"sandbox": {"network": False}}}
    for job, extra in fields.items():
        cluster.api.put_job(job, [probe], **extra)
        run = cluster.api.trigger(job)
        done = cluster.api.wait_for_status(run, ("succeeded", "failed"), timeout=60)
        assert cluster.api.log(run).decode().split() == expected, (job, done)

    cluster.start_worker("root", {"where": "root"}, data_dir=scratch / "root")
    cluster.api.put_job("control", [probe], properties={"where": "root"})
    run = cluster.api.trigger("control")
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    assert cluster.api.log(run).decode().split() == [
        "0",
        "database-read",
        "runs-listed",
        "workspace-written",
    ]


@AS_ROOT
def test_a_worker_runs_its_steps_as_another_user(cluster: Cluster, scratch: Path) -> None:
    """orchestra worker --run-as nobody: its steps run as nobody, in a workspace of theirs,
    and cannot list the worker's journals nor read its token file."""
    cluster.start()
    data_dir = scratch / "w"
    token = scratch / "w.token"
    token.write_text(cluster.worker_token + "\n")
    token.chmod(0o600)
    argv = orchestra_argv("worker", "--url", cluster.url, "--user", WORKER_USER)
    argv += ["--token-file", str(token), "--identifier", "w", "--data-dir", str(data_dir)]
    process = cluster.spawn(cluster.unique("worker-w"), [*argv, "--run-as", "nobody"])
    cluster.wait_for_active("w", process)
    assert "steps run as nobody (uid 65534" in process.log()
    cluster.api.put_job("probe", [run_as_nobody_probe(str(data_dir / "runs"), str(token))])
    run = cluster.api.trigger("probe")
    cluster.api.wait_for_status(run, "succeeded", timeout=60)
    assert cluster.api.log(run).decode().split() == [
        str(NOBODY),
        "database-denied",  # the token file, here
        "runs-denied",
        "workspace-written",
    ]
    workspace = next((data_dir / "workspaces").iterdir())
    assert workspace.stat().st_uid == NOBODY
    assert (workspace / "written").stat().st_uid == NOBODY


def test_run_as_is_refused_for_a_missing_user_and_without_root(cluster: Cluster) -> None:
    """--run-as names a user that does not exist: the worker does not start, and says why;
    run by a user other than root, it says it needs root."""
    cluster.start()
    base = orchestra_argv("worker", "--url", cluster.url, "--user", WORKER_USER, "--token", "-")
    env = cluster.env()
    missing = subprocess.run(
        [*base, "--run-as", "no-such-user-here"],
        input=cluster.worker_token + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0
    assert "no-such-user-here: there is no such user" in missing.stderr
    if os.geteuid() != 0:
        pytest.skip("run as root to check the refusal as nobody")
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    check = subprocess.run(
        [*as_nobody, sys.executable, "-c", "import orchestra"], env=env, cwd="/", check=False
    )
    if check.returncode != 0:
        pytest.skip("nobody cannot run this Python")
    refused = subprocess.run(
        [*as_nobody, *base, "--run-as", "root"],
        input=cluster.worker_token + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "needs the worker to run as root" in refused.stderr
