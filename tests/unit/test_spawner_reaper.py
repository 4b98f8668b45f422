"""The spawner's reaper (worker/spawner.py): one thread waits for every step and reports each
exit once, with its status, even for a step that ended before it was registered; real child
processes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from orchestra.worker.spawner import Reaper


def exits(out: str) -> dict[int, int | None]:
    said = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {m["pid"]: m["exit"] for m in said if "exit" in m}


def wait_for(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_each_exit_is_reported_once_with_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reaper = Reaper()
    commands = {
        "ok": ["true"],
        "failed": ["sh", "-c", "exit 3"],
        "killed": ["sh", "-c", "kill -TERM $$"],
    }
    started = {}
    for name, argv in commands.items():
        process = subprocess.Popen(argv)
        reaper.add(process, str(tmp_path / f"{name}.exit"))
        started[name] = process
    reaper.close()  # returns once every step has ended

    said = exits(capsys.readouterr().out)
    assert said == {
        started["ok"].pid: 0,
        started["failed"].pid: 3,
        started["killed"].pid: -15,
    }
    assert (tmp_path / "failed.exit").read_text() == "3"
    assert all(p.returncode is not None for p in started.values())


def test_a_step_that_ends_before_it_is_registered_is_still_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reaper = Reaper()
    waiting = subprocess.Popen(["sleep", "0.5"])
    reaper.add(waiting, str(tmp_path / "waiting.exit"))  # the reaper now waits for any child
    quick = subprocess.Popen(["true"])
    wait_for(lambda: quick.pid in reaper._early, "the reaper to take the unregistered step")

    reaper.add(quick, str(tmp_path / "quick.exit"))
    reaper.close()

    said = exits(capsys.readouterr().out)
    assert said == {quick.pid: 0, waiting.pid: 0}
    assert (tmp_path / "quick.exit").read_text() == "0"
