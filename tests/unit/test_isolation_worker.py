"""The worker's side of isolation: the sandbox's bwrap command and its start (worker/sandbox.py),
the limits given to the spawner and what a failed step's log says of them (worker/limits.py),
the spawner applying them to a real child process, and the worker's options."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestra.worker import limits as step_limits
from orchestra.worker import sandbox as sandboxing
from orchestra.worker.limits import ProcessGroups, pids_cgroup
from orchestra.worker.sandbox import Sandbox, hidden_paths, options, start_sandbox
from orchestra.worker.spawner import Reaper, _spawn

BWRAP = "/usr/bin/bwrap"


def pairs(arguments: list[str], flag: str) -> list[str]:
    return [arguments[i + 1] for i, a in enumerate(arguments) if a == flag]


def test_the_sandbox_hides_the_data_directory_then_binds_the_workspace_back(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    workspace = data / "workspaces" / "job"
    workspace.mkdir(parents=True)
    token = tmp_path / "token"
    token.write_text("secret")
    arguments = options(workspace, True, [data, token, tmp_path / "absent"])
    assert arguments.index("--tmpfs") < arguments.index("--bind")
    # Under /tmp (pytest's directories are), the private /tmp hides them already.
    assert pairs(arguments, "--tmpfs") == ["/tmp"]
    assert "--cap-drop" in arguments and pairs(arguments, "--cap-drop") == ["ALL"]
    assert pairs(arguments, "--bind") == [str(workspace)]
    assert pairs(arguments, "--chdir") == [str(workspace)]
    assert "--unshare-pid" in arguments and "--unshare-net" not in arguments

    elsewhere = Path("/var/lib/orchestra-test-not-there")
    outside = options(workspace, False, [Path("/etc"), Path("/etc/hostname"), elsewhere])
    assert "--unshare-net" in outside
    assert pairs(outside, "--tmpfs") == ["/tmp", "/run", "/etc"]
    assert pairs(outside, "--ro-bind") == ["/", "/dev/null"]  # a file: /dev/null over it
    assert outside[outside.index("/dev/null") + 1] == "/etc/hostname"


def test_the_root_cannot_be_hidden_and_paths_are_made_absolute() -> None:
    with pytest.raises(ValueError, match="root"):
        hidden_paths([Path("/")])
    assert hidden_paths([Path("a"), Path("a")]) == (Path("a").absolute(),)


def test_a_worker_that_cannot_sandbox_says_why_in_its_property(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sandboxing.shutil, "which", lambda _name: None)
    properties: dict[str, str] = {}
    with caplog.at_level(logging.INFO):
        found = start_sandbox("auto", [], properties)
    assert found is not None and not found.available
    assert properties == {
        "sandbox": "unavailable: bwrap is not installed (Debian's bubblewrap package)"
    }
    assert "bwrap is not installed" in caplog.text
    assert start_sandbox("always", [], {}) is None  # it must not start at all
    never: dict[str, str] = {}
    assert start_sandbox("never", [], never) is not None and never == {}
    with pytest.raises(ValueError, match="--sandbox"):
        sandboxing.prepare("sometimes")


def test_a_bwrap_that_fails_is_reported_with_what_it_said(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    assert sandboxing.probe(str(fake)) == (
        "bwrap does not work here: bwrap: No permissions to creating new namespace"
    )


@pytest.mark.skipif(not Path(BWRAP).exists(), reason="bubblewrap is not installed")
def test_a_working_bwrap_is_found_and_wraps_the_command(tmp_path: Path) -> None:
    properties: dict[str, str] = {}
    found = start_sandbox("always", [tmp_path], properties)
    assert found is not None, "bwrap is installed but does not work here"
    assert properties == {"sandbox": "true"}
    command = found.command(["echo", "hi"], tmp_path, network=False)
    assert command[0] == found.bwrap and command[-3:] == ["--", "echo", "hi"]
    assert subprocess.run(command, capture_output=True, check=True).stdout == b"hi\n"
    assert found.wanted(False) and Sandbox("auto", BWRAP).wanted(False) is False


def test_limits_become_resource_limits_and_notes(tmp_path: Path) -> None:
    none = ProcessGroups(None)
    applied = step_limits.step_limits(
        {"memory_mb": 64, "open_files": 5, "cpu_seconds": 2, "processes": 4},
        none,
        "run",
        0,
        sandboxed=True,
    )
    assert applied.rlimits["RLIMIT_AS"] == (64 << 20, 64 << 20)
    assert applied.rlimits["RLIMIT_NOFILE"] == (5, 5)
    assert applied.rlimits["RLIMIT_CPU"] == (2, 3)  # SIGXCPU at 2 s, SIGKILL at 3
    assert applied.rlimits["RLIMIT_NPROC"] == (4, 4)  # no cgroup to count them
    assert applied.cgroup is None
    notes = " ".join(applied.notes)
    assert "bwrap too few files" in notes and "limits.processes=4" in notes
    request = applied.request()
    assert request["rlimits"] == {k: list(v) for k, v in applied.rlimits.items()}
    assert "cgroup" not in request
    assert step_limits.step_limits({}, none, "run", 0, sandboxed=False).request() == {}


def test_a_failed_step_s_log_says_which_limit_when_the_worker_can_tell() -> None:
    cpu = {"cpu_seconds": 1}
    assert "CPU time limit" in (
        step_limits.diagnosis(cpu, -signal.SIGXCPU, 0, sandboxed=False) or ""
    )
    assert "CPU time limit" in (step_limits.diagnosis(cpu, 152, 0, sandboxed=True) or "")
    assert step_limits.diagnosis(cpu, 152, 0, sandboxed=False) is None
    assert step_limits.diagnosis(cpu, 1, 0, sandboxed=False) is None
    said = step_limits.diagnosis({"processes": 3}, 2, 4, sandboxed=False) or ""
    assert "process limit (limits.processes=3): 4 new processes were refused" in said
    assert step_limits.diagnosis({"processes": 3}, 2, 0, sandboxed=False) is None
    memory = step_limits.diagnosis({"memory_mb": 8, "open_files": 9}, 1, 0, sandboxed=False)
    assert memory is not None and "limits.memory_mb=8, limits.open_files=9" in memory


def spawned(tmp_path: Path, capsys: pytest.CaptureFixture[str], request: dict[str, object]) -> str:
    """Run one step through the spawner's own code; its log."""
    log, exit_path = tmp_path / "step.log", tmp_path / "step.exit"
    log.touch()
    reaper = Reaper()
    _spawn(
        {"id": 1, "cwd": str(tmp_path), "variables": {}, "log": str(log), "exit": str(exit_path)}
        | request,
        reaper,
    )
    reaper.close()
    said = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "error" not in said[0], said
    return log.read_text()


def test_the_spawner_applies_the_limits_to_the_step_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    show = (
        "import resource as r; "
        "print([r.getrlimit(getattr(r, n)) for n in ('RLIMIT_AS', 'RLIMIT_NOFILE', 'RLIMIT_CPU')])"
    )
    rlimits = {"RLIMIT_AS": [512 << 20, 512 << 20], "RLIMIT_NOFILE": [64, 64], "RLIMIT_CPU": [7, 8]}
    out = spawned(tmp_path, capsys, {"argv": [sys.executable, "-c", show], "rlimits": rlimits})
    assert out.strip() == str([(512 << 20, 512 << 20), (64, 64), (7, 8)])
    assert resource.getrlimit(resource.RLIMIT_CPU)[0] != 7  # not the spawner's own


def test_a_step_over_its_cpu_limit_is_killed_by_sigxcpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, exit_path = tmp_path / "step.log", tmp_path / "step.exit"
    reaper = Reaper()
    request = {
        "id": 1,
        "argv": [sys.executable, "-c", "while True: pass"],
        "cwd": str(tmp_path),
        "variables": {},
        "log": str(log),
        "exit": str(exit_path),
        "rlimits": {"RLIMIT_CPU": [1, 2]},
    }
    _spawn(request, reaper)
    reaper.close()
    assert exit_path.read_text() == str(-signal.SIGXCPU)


def test_a_request_with_an_unknown_limit_is_refused_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reaper = Reaper()
    request = {
        "id": 1,
        "argv": ["true"],
        "cwd": str(tmp_path),
        "variables": {},
        "log": str(tmp_path / "log"),
        "exit": str(tmp_path / "exit"),
        "rlimits": {"RLIMIT_NOPE": [1, 1]},
    }
    _spawn(request, reaper)
    reaper.close()
    said = json.loads(capsys.readouterr().out.splitlines()[0])
    assert said["id"] == 1 and "invalid spawn request" in said["error"]


@pytest.mark.skipif(pids_cgroup()[0] is None, reason=f"no pids cgroup here: {pids_cgroup()[1]}")
def test_a_step_s_cgroup_counts_its_processes_and_goes_once_they_are_gone(tmp_path: Path) -> None:
    groups = ProcessGroups(f"test-{uuid.uuid4().hex}")
    path = groups.make("run", 0, 2)
    assert path is not None and (path / "pids.max").read_text().strip() == "2"
    with open(path / "cgroup.procs", "w") as procs:
        # A process moved in (as the spawner's child does) tries to start three.
        code = "import subprocess; [subprocess.Popen(['sleep', '30']) for _ in range(3)]"
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            preexec_fn=lambda: os.write(procs.fileno(), b"0"),
            stderr=subprocess.DEVNULL,
        )
        assert child.wait(timeout=30) != 0  # the third process was refused
    assert groups.refused("run", 0) >= 1
    left = [int(p) for p in (path / "cgroup.procs").read_text().split()]
    assert left  # the sleeps it did start
    groups.remove("run", 0)
    assert path.exists()  # not while they run
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
        groups.sweep()
    assert not path.exists()
    assert groups.root is not None
    groups.close()
    assert not groups.root.exists()
