"""uvicorn's HTTP protocol (httptools) with a deadline for a request's headers.

uvicorn closes a kept-alive connection that sends nothing for `timeout_keep_alive`, but it has
no deadline for the headers themselves (measured with uvicorn 0.55.0): a connection that sends
nothing after connecting, or half a request line and then a byte now and then, is kept open
forever (any byte cancels the keep-alive timer), and a few thousand of them exhaust the
server's sockets and file descriptors (a "slowloris"). An ASGI middleware cannot help: the
application is called only once the headers are complete. So this subclass arms a timer when
a connection opens and whenever it waits for a request's headers, disarms it when they are
complete, and closes the connection when it fires. Once a request's headers are in, the
application's own time is its own (a followed log may stream for hours), and a WebSocket
upgrade hands the connection to the WebSocket protocol with the timer disarmed.

It overrides `connection_made`, `connection_lost`, `data_received`, `on_message_begin` and
`on_headers_complete` of `uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`, calling
each original, and reads its `loop`, `transport` and `cycle` attributes: the bounds of uvicorn
in pyproject.toml are the versions its tests (tests/system/test_http_limits.py) passed on.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose request's headers take longer than `header_timeout`."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # waiting for a request's headers (bytes before it, a slow first line)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(header_timeout: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's `http=`, with this deadline in seconds."""
    return type("HeaderDeadline", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout})
