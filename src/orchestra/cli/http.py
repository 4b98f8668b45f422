"""The HTTP client behind `orchestra apply` and `orchestra run`: ORCHESTRA_URL, ORCHESTRA_USER
and ORCHESTRA_TOKEN, and API errors turned into one-line OrchestraErrors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from orchestra.errors import InvalidInput, OrchestraError

API = "/api/v1"


class Unreachable(OrchestraError):
    """The server could not be reached, the connection dropped, or a proxy (or the server,
    its database away) said it is unavailable for now: 502, 503 or 504."""


UNAVAILABLE = frozenset({502, 503, 504})
# A stream with nothing to read for this long is taken for a connection that silently died (a
# host gone without a reset): a follower then connects again, from the byte it reached.
STREAM_READ_TIMEOUT = 120.0


class Client:
    def __init__(self, url: str | None = None, user: str | None = None, token: str | None = None):
        self.url = (url or os.environ.get("ORCHESTRA_URL") or "http://127.0.0.1:8080").rstrip("/")
        user = user if user is not None else os.environ.get("ORCHESTRA_USER")
        token = token if token is not None else os.environ.get("ORCHESTRA_TOKEN")
        if not token:
            raise OrchestraError("set ORCHESTRA_TOKEN (and ORCHESTRA_USER) to a token of yours")
        auth: httpx.Auth | None = httpx.BasicAuth(user, token) if user else None
        headers = {} if user else {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(
            base_url=self.url + API, auth=auth, headers=headers, timeout=httpx.Timeout(30.0)
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._errors():
            response = self.http.request(method, path, **kwargs)
        _check(response)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, path: str, params: dict[str, Any]) -> Iterator[httpx.Response]:
        with self._errors():
            with self.http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=STREAM_READ_TIMEOUT)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _check(response)
                yield response

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from None
        except httpx.HTTPError as exc:
            raise OrchestraError(f"cannot reach {self.url}: {exc}") from None

    def close(self) -> None:
        self.http.close()


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
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text[:200]
    error = Unreachable if response.status_code in UNAVAILABLE else OrchestraError
    raise error(f"{response.status_code}: {detail}")
