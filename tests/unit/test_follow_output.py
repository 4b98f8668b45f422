"""What `--follow` says on stderr (cli/follow.py), from the run's JSON as it is read again and
again: why it waits (once per reason), each step's start (once), and its end."""

from __future__ import annotations

import io
from typing import Any

from orchestra.cli.follow import FollowPrinter, failed_step


def run(status: str, steps: list[tuple[str, str, int | None]], **fields: Any) -> dict[str, Any]:
    return {
        "identifier": "r1",
        "status": status,
        "worker": fields.pop("worker", None),
        "steps": [
            {"index": i, "name": name, "status": s, "exit_code": code}
            for i, (name, s, code) in enumerate(steps)
        ],
        **fields,
    }


def test_waiting_steps_and_the_failing_step_each_said_once() -> None:
    err = io.StringIO()
    printer = FollowPrinter(err)
    pending = [("build", "pending", None), ("test", "pending", None)]
    printer.update(run("pending", pending, waiting_reason="no worker has the properties gpu=a"))
    printer.update(run("pending", pending, waiting_reason="no worker has the properties gpu=a"))
    printer.update(run("pending", pending, waiting_reason="all matching workers are busy"))
    running = [("build", "running", None), ("test", "pending", None)]
    printer.update(run("running", running, worker="w1"))
    printer.update(run("running", running, worker="w1"))
    ended = [("build", "succeeded", 0), ("test", "failed", 2)]
    printer.ended(run("failed", ended, worker="w1"))
    assert err.getvalue().splitlines() == [
        "waiting: no worker has the properties gpu=a",
        "waiting: all matching workers are busy",
        "step 1/2 build started on w1",
        "step 2/2 test started on w1",
        "run r1 failed",
        "step 2/2 test failed with exit code 2",
    ]


def test_a_success_ends_with_its_status_and_an_exception_with_its_reason() -> None:
    err = io.StringIO()
    FollowPrinter(err).ended(run("succeeded", [("only", "succeeded", 0)], worker="w"))
    assert err.getvalue().splitlines()[-1] == "run r1 succeeded"
    lost = run("exception", [("only", "exception", None)], reason="worker w lost")
    err = io.StringIO()
    FollowPrinter(err).ended(lost)
    assert err.getvalue().splitlines()[-2:] == [
        "run r1 exception (worker w lost)",
        "step 1/1 only exception",
    ]
    assert failed_step(run("cancelled", [("only", "skipped", None)])) is None
