"""A worker's token out of its steps' reach, however the worker was started (a local worker of
`orchestra server --workers`, `--token TOKEN`, ORCHESTRA_TOKEN, `--token-file`) and whether
the step runs in a sandbox or not: a step reads the environment and the command line of every
process above it (its spawner, the agent, what started the agent) and its own environment,
and finds the token in none of them (docs/security.md, "Local workers, files and OS users")."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.accounts import WORKER_USER
from tests.support.api import Api
from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import orchestra_argv
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
    pytest.mark.parametrize("engine", ["sqlite"], indirect=True),
]

# Every process above this one, up to the top: its pid, command line and environment (or why
# they could not be read), and the ORCHESTRA_* variables of the step's own environment.
ANCESTORS = """
    import json, os
    found = {"own": sorted(k for k in os.environ if k.startswith("ORCHESTRA_")), "above": []}
    pid = os.getppid()
    while pid > 0:
        seen = {"pid": pid}
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as handle:
                    seen[part] = handle.read().replace(b"\\0", b" ").decode("latin-1")
            except OSError as exc:
                seen[part] = f"unreadable: {exc.strerror}"
        found["above"].append(seen)
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(") ", 1)[1].split()[1])
    print(json.dumps(found))
"""


def probe_steps(api: Api, properties: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run the probe unsandboxed and sandboxed on the worker with `properties`; what each
    found, and the raw log checked for `token` by the caller."""
    found = {}
    for job, extra in (("open", {}), ("boxed", {"sandbox": {"network": False}})):
        # A sandboxed step has a private /tmp: the interpreter by its real path, which a
        # virtual environment under /tmp (a fresh clone there) does not hide.
        command = py(ANCESTORS)
        command[0] = os.path.realpath(command[0])
        api.put_job(job, [command], properties=properties, **extra)
        run = api.trigger(job)
        api.wait_for_status(run, "succeeded", timeout=60)
        log = api.log(run).decode()
        found[job] = {"log": log, **json.loads(log)}
    return found


def assert_out_of_reach(found: dict[str, dict[str, Any]], token: str) -> None:
    for job, seen in found.items():
        assert token not in seen["log"], f"the {job} step found the worker's token"
        assert "ORCHESTRA_TOKEN" not in seen["own"], job
    # The unsandboxed step did look at its spawner and at the agent (their command lines).
    lines = [p["cmdline"] for p in found["open"]["above"]]
    assert any("orchestra.worker.spawner" in line for line in lines), lines
    assert any(" worker " in line and "--url" in line for line in lines), lines
    # The sandboxed one sees no process of the worker's at all.
    boxed = [p["cmdline"] for p in found["boxed"]["above"]]
    assert not any("orchestra" in line for line in boxed), boxed


@pytest.mark.parametrize("way", ["argument", "environment", "file"])
def test_a_worker_s_steps_cannot_find_its_token(cluster: Cluster, tmp_path: Path, way: str) -> None:
    cluster.start()
    token = cluster.worker_token
    argv = orchestra_argv("worker", "--url", cluster.url, "--user", WORKER_USER)
    argv += ["--identifier", way, "--data-dir", str(Path("/var/tmp") / tmp_path.name / way)]
    argv += ["--property", f"way={way}"]
    settings = {}
    if way == "argument":
        argv += ["--token", token]
    elif way == "environment":
        settings["ORCHESTRA_TOKEN"] = token
    else:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        argv += ["--token-file", str(token_file)]
    try:
        process = cluster.spawn(cluster.unique(f"worker-{way}"), argv, settings)
        cluster.wait_for_active(way, process)
        assert_out_of_reach(probe_steps(cluster.api, {"way": way}), token)
    finally:
        shutil.rmtree(Path("/var/tmp") / tmp_path.name, ignore_errors=True)


def test_a_local_worker_s_steps_cannot_find_its_token(cluster: Cluster, tmp_path: Path) -> None:
    """orchestra server --workers 1 --worker-sandbox auto: the local worker's token, made by
    the server at its start, is in no process its steps can look at."""
    scratch = Path("/var/tmp") / f"{tmp_path.name}-local"
    data_dir = scratch / "server"
    data_dir.mkdir(parents=True)
    database = data_dir / "orchestra.sqlite"
    source = sqlite3.connect(cluster.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as copy:
        source.backup(copy)
    source.close()
    try:
        _process, url = cluster.start_role(
            "all-in-one",
            database_url=f"sqlite:///{database}",
            data_dir=data_dir,
            arguments=["--workers", "1", "--worker-sandbox", "auto"],
        )
        api = cluster.use(url)
        api.put_project("p")
        wait_until(lambda: (api.worker("local-1") or {}).get("is_active"), 60, "local-1")
        found = probe_steps(api, {})
        # The token is the server's to know: take it from the database (its hash is stored),
        # so check instead that no `orc_` secret shows anywhere the steps looked.
        for job, seen in found.items():
            assert "orc_" not in seen["log"], f"the {job} step found a token"
        assert_out_of_reach(found, "orc_")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
