"""What `--follow` prints: the log on stdout, as it comes, and on stderr a line when each step
starts, why a pending run waits (its `waiting_reason`, again whenever it changes) and, when the
run ends, its status, then the step that failed and its exit code.

`FollowPrinter` turns the run's JSON, as it is read again and again, into those stderr lines
(no I/O of its own but the streams given); `RunWatcher` reads the run every few tenths of a
second beside the log's stream; `follow` does a whole `--follow`, retries included."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

from orchestra.cli.http import Unreachable

ACTIVE = ("pending", "running")
FAILED_STEP = ("failed", "aborted", "exception")
WATCH_SECONDS = 0.5  # how often the run is read beside its log's stream
# How long `--follow` tries to reach the server again after its stream dropped, and how long
# it pauses between tries.
RECONNECT_SECONDS = 60.0
RECONNECT_PAUSE = 0.5

Run = dict[str, Any]


class FollowClient(Protocol):
    """What following needs of the CLI's HTTP client (cli/http.py's Client has it)."""

    def request(self, method: str, path: str) -> Any: ...

    def stream(self, path: str, params: dict[str, Any]) -> Any: ...


class FollowPrinter:
    """The stderr lines of a followed run. `update` with each reading of the run (any
    order of threads: it locks); `ended` once with the final run."""

    def __init__(self, err: IO[str] | None = None) -> None:
        self.err = err if err is not None else sys.stderr
        self._lock = threading.Lock()
        self._run: str | None = None
        self._announced: set[int] = set()
        self._waiting: str | None = None

    def update(self, run: Run) -> None:
        with self._lock:
            if run.get("identifier") != self._run:  # another attempt: its steps anew
                self._run, self._announced, self._waiting = run.get("identifier"), set(), None
            if run.get("status") == "pending":
                reason = run.get("waiting_reason") or run.get("warning")
                if reason and reason != self._waiting:
                    self._say(f"waiting: {reason}")
                self._waiting = reason
            for step in run.get("steps") or ():
                index = step.get("index")
                if step.get("status") in ("pending", "skipped") or index in self._announced:
                    continue
                self._announced.add(index)
                where = f" on {run['worker']}" if run.get("worker") else ""
                total = len(run.get("steps") or ())
                self._say(f"step {index + 1}/{total} {step.get('name')} started{where}")

    def ended(self, run: Run) -> None:
        """The run's end: `run ID STATUS (reason)`, then the step that failed, if one did."""
        self.update(run)
        with self._lock:
            said = run.get("reason")
            reason = f" ({said})" if said and said != run["status"] else ""
            self._say(f"run {run['identifier']} {run['status']}{reason}")
            failed = failed_step(run)
            if failed is not None:
                total = len(run.get("steps") or ())
                code = failed.get("exit_code")
                exit_code = "" if code is None else f" with exit code {code}"
                self._say(
                    f"step {failed['index'] + 1}/{total} {failed.get('name')} "
                    f"{failed['status']}{exit_code}"
                )

    def retried(self, run: Run) -> None:
        with self._lock:
            self._say(f"attempt {run['attempt'] + 1} is run {run['retried_by']}")

    def _say(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()


def failed_step(run: Run) -> dict[str, Any] | None:
    """The step that made the run fail (the first one that did not succeed), if any."""
    if run.get("status") == "succeeded":
        return None
    for step in run.get("steps") or ():
        if step.get("status") in FAILED_STEP:
            return dict(step)
    return None


class RunWatcher:
    """Reads the run every WATCH_SECONDS in a thread and gives each reading to `seen`, until
    stopped. A reading that fails is skipped (the log's stream says when the server is gone)."""

    def __init__(
        self, read: Callable[[], Run], seen: Callable[[Run], None], interval: float = WATCH_SECONDS
    ) -> None:
        self.read, self.seen, self.interval = read, seen, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="run-watcher", daemon=True)

    def __enter__(self) -> RunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                run = self.read()
            except Exception:  # any failure: the next reading may work
                run = None
            if run is not None and not self._stop.is_set():
                self.seen(run)
            self._stop.wait(self.interval)


def follow(
    client: FollowClient, project: str, run: str, printer: FollowPrinter | None = None
) -> int:
    """Follow a run to its end, then its retries' in turn (each attempt is a run of its own,
    made in the transaction that ends the one before): its log to stdout, the printer's lines
    to stderr. 0 if the last attempt succeeded, 1 if not."""
    printer = printer or FollowPrinter()
    followed = {run}
    reached = False
    while True:
        path = f"/projects/{project}/runs/{run}"
        with RunWatcher(_reader(client, path), printer.update):
            final = _stream_log(client, path, reached)
        reached = True
        printer.ended(final)
        retry = final.get("retried_by")
        if not retry or retry in followed:
            return 0 if final["status"] == "succeeded" else 1
        followed.add(retry)
        printer.retried(final)
        run = retry


def _reader(client: FollowClient, path: str) -> Callable[[], Run]:
    def read() -> Run:
        return dict(client.request("GET", path))

    return read


def _stream_log(client: FollowClient, path: str, reached: bool) -> Run:
    """Stream one run's log to stdout until the run ends, and return it then. Once the server
    was reached, a connection that drops (a server restarted, a proxy's 502 or idle timeout, a
    host gone silent) is opened again from the byte reached, for up to RECONNECT_SECONDS
    without an answer."""
    out = sys.stdout.buffer
    offset, lost_since = 0, None
    while True:
        start = offset
        try:
            params = {"follow": "true", "offset": str(offset)}
            with client.stream(f"{path}/log", params) as response:
                reached, lost_since = True, None
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    out.flush()
                    offset += len(chunk)
            state: Run = client.request("GET", path)
            if state["status"] not in ACTIVE:
                return state
        except Unreachable as error:
            if not reached:
                raise  # never reached: a wrong URL or a server down is said at once
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                sys.stderr.write(f"{error}; reconnecting\n")
                sys.stderr.flush()
            elif now - lost_since > RECONNECT_SECONDS:
                raise
        if offset == start:
            time.sleep(RECONNECT_PAUSE)  # nothing came: do not hammer a server coming back
