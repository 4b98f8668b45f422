"""The client behind the CLI's commands: orchestra.client.Client (ORCHESTRA_URL,
ORCHESTRA_USER, ORCHESTRA_TOKEN), its errors turned into OrchestraErrors that the CLI's one
boundary prints as one line, and a log's stream for `--follow` (cli/follow.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from orchestra import client as api
from orchestra.client.connection import stream_timeout
from orchestra.client.responses import error_of
from orchestra.errors import InvalidInput, OrchestraError


class Unreachable(OrchestraError):
    """The server could not be reached, the connection dropped, or a proxy (or the server,
    its database away) said it is unavailable for now: 502, 503 or 504."""


class ApiFailure(OrchestraError):
    """The API refused the call: `status` and the API's `detail`."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def translated() -> Iterator[None]:
    """The client's errors as the CLI's: one line each, the status first."""
    try:
        yield
    except api.Unreachable as exc:
        raise Unreachable(str(exc)) from None
    except api.ApiError as exc:
        raise ApiFailure(str(exc), exc.status) from None
    except api.ClientError as exc:
        raise OrchestraError(str(exc)) from None


class Client(api.Client):
    def __init__(self, url: str | None = None, user: str | None = None, token: str | None = None):
        super().__init__(url, user=user, token=token)
        if not self.connection.token:
            self.close()
            raise OrchestraError("set ORCHESTRA_TOKEN (and ORCHESTRA_USER) to a token of yours")

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        with translated():
            return super().request(method, path, params=params, json=json)

    @contextmanager
    def stream(self, path: str, params: dict[str, Any]) -> Iterator[httpx.Response]:
        """The streamed answer of GET path (a log), once it says it succeeded."""
        with translated():
            response = self._send(
                "GET", path, params=params, stream=True, timeout=stream_timeout(30.0)
            )
        try:
            if response.status_code >= 400:
                response.read()
                _check(response)
            try:
                yield response
            except httpx.TransportError as exc:
                raise Unreachable(f"connection to {self.url} lost: {exc}") from None
        finally:
            response.close()


def key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """`--option KEY=VALUE` given several times, as a mapping."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{option} takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result


def _check(response: httpx.Response) -> None:
    """Nothing for a success; the CLI's error for a failure (Unreachable for 502, 503, 504)."""
    if response.status_code < 400:
        return
    with translated():
        raise error_of(response)
