"""Spare journal directories (worker/spares.py): a finished run's directory, emptied of its
files, becomes the next run's; nothing of the run before is left to read, and a taken-over
directory has no assignment until the new one is written."""

from __future__ import annotations

from pathlib import Path

from orchestra.protocol import messages as m
from orchestra.worker.journal import Journal
from orchestra.worker.spares import Spares


def assignment(run: str, steps: int = 1) -> m.Assign:
    return m.Assign(
        run=run,
        project="p",
        job="j",
        parameters={},
        workspace="j",
        steps=[m.AssignedStep(name=f"s{i}", command=["true"]) for i in range(steps)],
        abort_grace=1.0,
        url="http://127.0.0.1:1",
    )


def finished(root: Path, spares: Spares, run: str, steps: int = 1) -> Journal:
    journal = Journal.create(root, assignment(run, steps), root / "ws", spares)
    for step in range(steps):
        journal.step_log(step).write_bytes(b"secret output of " + run.encode())
        journal.step_exit(step).write_text("0")
        journal.append("step_started", step=step, date="2026-06-01T00:00:00+00:00")
    journal.append("run_ended", status="succeeded", reason=None, date="2026-06-01T00:00:01+00:00")
    return journal


def test_a_finished_journal_leaves_runs_at_once_and_is_reused_empty(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    spares = Spares(tmp_path / "spare", keep=2)
    spares.reset()
    first = finished(runs, spares, "run-1", steps=2)
    kept_inode = first.directory.stat().st_ino

    first.remove(spares)

    assert list(runs.iterdir()) == []  # out of runs/: recovery will not see it
    second = Journal.create(runs, assignment("run-2"), runs / "ws", spares)
    assert second.directory == runs / "run-2"
    assert second.directory.stat().st_ino == kept_inode  # the same directory, not a new one
    assert Journal.load(second.directory) is not None  # its own assignment, whole
    assert Journal.load(second.directory).assignment.run == "run-2"  # type: ignore[union-attr]
    assert second.events == [] and (second.directory / "events.jsonl").read_bytes() == b""
    for step in (0, 1):  # the run before's output is gone, its exit statuses too
        assert not second.step_log(step).exists()
        assert second.read_exit(step) is None
    # Only the new run's own files: nothing of the run before is left in it.
    names = {p.name for p in second.directory.iterdir()}
    assert names == {"assignment.json", "events.jsonl", "workspace"}


def test_a_taken_over_directory_is_incomplete_until_its_assignment_is_written(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    spares = Spares(tmp_path / "spare", keep=1)
    spares.reset()
    finished(runs, spares, "run-1").remove(spares)

    assert spares.take(runs / "run-2")  # what an agent dying right now would leave

    assert not (runs / "run-2" / "assignment.json").exists()
    assert Journal.load(runs / "run-2") is None  # discarded at recovery, as before


def test_no_more_spares_than_kept_and_reset_empties_the_pool(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    spares = Spares(tmp_path / "spare", keep=1)
    spares.reset()
    for run in ("run-1", "run-2", "run-3"):
        finished(runs, spares, run).remove(spares)

    assert len(list((tmp_path / "spare").iterdir())) == 1
    assert list(runs.iterdir()) == []
    spares.reset()
    assert list((tmp_path / "spare").iterdir()) == []
    assert not spares.take(runs / "run-4")
