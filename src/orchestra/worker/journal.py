"""A run's journal on the worker's disk: what was assigned, every event in order, each step's
output and exit status. Nothing leaves it before the master has acknowledged it, so a lost
connection or a restarted agent loses nothing.

Layout of runs/<run>/: assignment.json, workspace (the directory used), events.jsonl (one
event per line, numbered from 1), step-<i>.log (the process output), step-<i>.exit, and
`withheld` when the assignment had secret values.

Every file is the worker's alone (0600, in directories of mode 0700). The secret values of a
run (its assignment's `secrets`, and wherever else they appear in it) are kept in memory only:
assignment.json holds them masked, and the spawner masks them in a step's output before it is
written to step-<i>.log. A worker that restarts during such a run therefore no longer has
them: the step that was running goes on (its spawner still masks it), and a step not started
yet ends `exception` (docs/security.md, "Local workers, files and OS users").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from orchestra.protocol import messages as m
from orchestra.worker.spares import Spares

log = logging.getLogger(__name__)
# Fields of journaled events that are the worker's alone (a step's pid, whether it runs in a
# sandbox): kept for a restarted agent, never sent.
_WORKER_ONLY_FIELDS = ("kind", "pid", "sandboxed")
# Fields of an assignment that name things and hold no value of a job's: kept as they are in
# assignment.json; secret values are masked in all the others.
_NAMING_FIELDS = frozenset(
    {
        "type",
        "run",
        "project",
        "job",
        "workspace",
        "abort_grace",
        "url",
        "timeout",
        "sandbox",
        "limits",
        "artifacts",  # globs, and the needs' files' paths and hashes (worker/artifacts.py)
        "inputs",
    }
)
WITHHELD = "withheld"
WITHHELD_REASON = (
    "the worker restarted during this run, and it keeps no secret value on disk: "
    "this step cannot have them; run the job again"
)


class Journal:
    def __init__(self, directory: Path, assignment: m.Assign, workspace: Path) -> None:
        self.directory = directory
        self.assignment = assignment
        self.workspace = workspace
        self.events: list[dict[str, Any]] = []
        self._unsaved: list[str] = []
        self.acknowledged = 0
        # Whether the run's secret values are gone (the journal was reloaded from disk).
        self.withheld = False
        self._events_fd = _open_append(directory / "events.jsonl")

    @property
    def run(self) -> str:
        return self.assignment.run

    @classmethod
    def create(
        cls,
        root: Path,
        assignment: m.Assign,
        workspace: Path,
        spares: Spares | None = None,
        text: str | None = None,
    ) -> Journal:
        """A new run's journal: in a spare directory when there is one (worker/spares.py)
        instead of a new one. `text` is the assignment as
        the master sent it (it is written as it came, not encoded again)."""
        directory = root / assignment.run
        if spares is None or not spares.take(directory):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(directory / "workspace", str(workspace))
        text = text or m.encode(assignment)
        if any(assignment.secrets):
            text = _without_secrets(text, assignment.secrets)
            _write_atomic(directory / WITHHELD, "")
        _write_atomic(directory / "assignment.json", text)
        return cls(directory, assignment, workspace)

    @classmethod
    def load(cls, directory: Path) -> Journal | None:
        """Reopen a journal; None if it is incomplete (the assignment was never fully written)."""
        try:
            assignment = m.Assign.model_validate_json((directory / "assignment.json").read_text())
            workspace = Path((directory / "workspace").read_text())
        except (OSError, ValueError):
            return None
        journal = cls(directory, assignment, workspace)
        journal.withheld = (directory / WITHHELD).exists()
        path = directory / "events.jsonl"
        good = 0
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # a torn last line: the agent died while writing it
                try:
                    journal.events.append(json.loads(line))
                except ValueError:
                    break
                good += len(line)
        if good != path.stat().st_size:
            os.truncate(path, good)
        return journal

    # Events.

    @property
    def next_sequence(self) -> int:
        return len(self.events) + 1

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Journal an event. When the disk is full the event is kept in memory (it is still
        sent) and written as soon as space comes back."""
        event = {"kind": kind, "sequence": self.next_sequence, **fields}
        self.events.append(event)
        self._unsaved.append(json.dumps(event) + "\n")
        self.save()
        return event

    def save(self) -> bool:
        """Write the events not yet on disk; False if the disk refused them."""
        while self._unsaved:
            data = self._unsaved[0].encode()
            # One unbuffered write per event; a torn one (disk full half way) is cut off
            # again, so the journal only ever holds whole lines.
            size = os.fstat(self._events_fd).st_size
            try:
                written = os.write(self._events_fd, data)
            except OSError as exc:
                log.warning("run %s: cannot write its journal: %s", self.run, exc.strerror)
                return False
            if written != len(data):
                os.ftruncate(self._events_fd, size)
                return False
            self._unsaved.pop(0)
        return True

    def unsent_frame(self, after: int, limit: int, max_bytes: int) -> tuple[bytes, int] | None:
        """The events after sequence `after` as a binary report frame (at most `limit` of them
        and about `max_bytes` of output) and the last sequence in it; None if there are none."""
        headers: list[dict[str, Any]] = []
        payloads: list[bytes] = []
        size = 0
        for event in self.events[after : after + limit]:
            if event["kind"] == "output":
                data = self._read_masked(event["step"], event["file_offset"], event["length"])
                headers.append(
                    {
                        "kind": "output",
                        "sequence": event["sequence"],
                        "step": event["step"],
                        "offset": event["offset"],
                        "size": len(data),
                        # Journals written before output had dates have none.
                        **({"date": event["date"]} if "date" in event else {}),
                    }
                )
                payloads.append(data)
                size += len(data)
            else:
                headers.append(self._message(event).model_dump(mode="json"))
            if size >= max_bytes:
                break
        if not headers:
            return None
        return m.encode_report_frame(self.run, headers, payloads), headers[-1]["sequence"]

    @property
    def secrets(self) -> list[bytes]:
        return [s.encode() for s in self.assignment.secrets if s]

    @property
    def holdback(self) -> int:
        """Bytes of output kept back while a step runs, so that a secret split across two
        reads is still seen whole when it is masked."""
        return max((len(s) for s in self.secrets), default=1) - 1

    def _message(self, event: dict[str, Any]) -> m.Event:
        """A journaled event other than output as its protocol message."""
        kind = event["kind"]
        fields = {k: v for k, v in event.items() if k not in _WORKER_ONLY_FIELDS}
        model: Any = {
            "step_started": m.StepStarted,
            "step_ended": m.StepEnded,
            "run_ended": m.RunEnded,
        }[kind]
        return model.model_validate(fields)  # type: ignore[no-any-return]

    def _read_masked(self, step: int, start: int, length: int) -> bytes:
        """Bytes [start, start+length) of a step's output with every secret value replaced by
        asterisks of the same length, looking around the range for secrets that cross it."""
        margin = self.holdback
        begin = max(0, start - margin)
        with open(self.step_log(step), "rb") as handle:
            handle.seek(begin)
            window = bytearray(handle.read(start - begin + length + margin))
        for secret in self.secrets:
            found = window.find(secret)
            while found != -1:
                window[found : found + len(secret)] = b"*" * len(secret)
                found = window.find(secret, found + len(secret))
        return bytes(window[start - begin : start - begin + length])

    # State derived from the events.

    def ended(self) -> bool:
        return any(e["kind"] == "run_ended" for e in self.events)

    def only_starts_after(self, after: int) -> bool:
        """Whether the events after sequence `after` are all step starts (and there are some)."""
        unsent = self.events[after:]
        return bool(unsent) and all(e["kind"] == "step_started" for e in unsent)

    def ends_step_between(self, after: int, upto: int) -> bool:
        """Whether a step or the run ends among the events of sequence (after, upto]."""
        return any(e["kind"] in ("step_ended", "run_ended") for e in self.events[after:upto])

    def outcome(self) -> m.Event | None:
        """The run's `run_ended` event, once it has one."""
        for event in reversed(self.events):
            if event["kind"] == "run_ended":
                return self._message(event)
        return None

    def log_size(self) -> int:
        return sum(e["length"] for e in self.events if e["kind"] == "output")

    def step_output_size(self, step: int) -> int:
        return sum(e["length"] for e in self.events if e["kind"] == "output" and e["step"] == step)

    def step_events(self, step: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        started = ended = None
        for event in self.events:
            if event.get("step") == step:
                if event["kind"] == "step_started":
                    started = event
                elif event["kind"] == "step_ended":
                    ended = event
        return started, ended

    # Files.

    def step_log(self, step: int) -> Path:
        return self.directory / f"step-{step}.log"

    def step_exit(self, step: int) -> Path:
        return self.directory / f"step-{step}.exit"

    def read_exit(self, step: int) -> int | None:
        try:
            return int(self.step_exit(step).read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self._events_fd >= 0:
            os.close(self._events_fd)
            self._events_fd = -1

    def remove(self, spares: Spares | None = None) -> None:
        """Drop the journal (its run is over and acknowledged): its directory becomes a spare
        for a next run, or is deleted."""
        self.close()
        if spares is None:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            spares.give(self.directory)


def _without_secrets(text: str, secrets: list[str]) -> str:
    """The assignment's JSON with every secret value masked (asterisks of its length) outside
    the fields that name things, and no `secrets` list."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)

    def masked(value: Any) -> Any:
        if isinstance(value, str):
            for secret in values:
                value = value.replace(secret, "*" * len(secret))
            return value
        if isinstance(value, list):
            return [masked(v) for v in value]
        if isinstance(value, dict):
            return {k: masked(v) for k, v in value.items()}
        return value

    document = json.loads(text)
    document.pop("secrets", None)
    return json.dumps({k: v if k in _NAMING_FIELDS else masked(v) for k, v in document.items()})


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
    # Renamed into place whole; not fsynced: what this guards against is the agent's death, and
    # the page cache survives that. A machine crash loses the worker's runs to the lease anyway.
    os.replace(temporary, path)
