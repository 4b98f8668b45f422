"""A server-sent events client for tests: reads GET /api/v1/events in a thread and keeps what
it got (events and comments), parsed as a browser's EventSource would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.processes import API


@dataclass(frozen=True)
class Received:
    id: str | None
    event: str
    data: str
    at: float  # time.monotonic() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def subject(self) -> str | None:
        shown = self.json
        return shown.get("identifier") if isinstance(shown, dict) else None


class EventStream:
    """GET URL/api/v1/events with `headers` (a token, or a session cookie) and `params`; the
    events and comments received, in order."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.events: list[Received] = []
        self.comments: list[tuple[str, float]] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._request = self._client.build_request(
            "GET", url + API + "/events", headers=dict(headers), params=dict(params or {})
        )
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.connected.wait(30):
            raise AssertionError("the event stream did not answer")
        if self.error is not None:
            raise self.error

    def _read(self) -> None:
        try:
            response = self._client.send(self._request, stream=True)
            self._response = response
            self.status = response.status_code
            self.connected.set()
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line == "":
                    if "data" in fields or "event" in fields:
                        received = Received(
                            fields.get("id"),
                            fields.get("event", "message"),
                            fields.get("data", ""),
                            time.monotonic(),
                        )
                        with self._lock:
                            self.events.append(received)
                    fields = {}
                elif line.startswith(":"):
                    with self._lock:
                        self.comments.append((line[1:].strip(), time.monotonic()))
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    fields[name] = (
                        fields[name] + "\n" + value if name == "data" and name in fields else value
                    )
        except Exception as exc:  # closed by `close`, or the server went away
            self.error = exc
        finally:
            self.connected.set()
            self.ended.set()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.events)

    def wait_for(
        self, condition: Callable[[list[Received]], bool], timeout: float, what: str
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.received()
            if condition(events):
                return events
            if self.ended.is_set():
                break
            time.sleep(0.02)
        events = self.received()
        if condition(events):
            return events
        summary = [(e.id, e.event, e.data[:120]) for e in events[-20:]]
        raise AssertionError(f"timed out waiting for {what}; last events: {summary}")

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(5)


def of_subject(events: list[Received], subject: str) -> list[Received]:
    return [e for e in events if e.event != "reset" and e.subject == subject]
