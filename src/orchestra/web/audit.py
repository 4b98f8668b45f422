"""Each change made through the API or the website goes into the audit log (services/audit.py):
a request that changes something (POST, PUT, PATCH, DELETE), made by an authenticated caller,
that succeeded: a status below 400, and for the website's forms, which answer a failure with a
redirect back carrying `error=`, no such redirect.

Not recorded: logins and logouts (the login throttle keeps the failures), and triggers: a run
holds who triggered it (its `source`), and triggering is the hot path of a busy instance.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestra.services.audit import AuditService

log = logging.getLogger(__name__)

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNRECORDED = ("/trigger", "/login", "/logout")


class AuditTrail:
    def __init__(self, app: ASGIApp, audit: AuditService) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES:
            await self.app(scope, receive, send)
            return

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Before the answer goes out (the change is committed by then): a client that
                # reads the log once answered finds its change there.
                await self._record(scope, message)
            await send(message)

        await self.app(scope, receive, recording_send)

    async def _record(self, scope: Scope, start: Message) -> None:
        status = start["status"]
        route = getattr(scope.get("route"), "path", None)
        if not route or not 0 < status < 400 or route.endswith(UNRECORDED):
            return
        if 300 <= status and b"error=" in dict(start.get("headers") or []).get(b"location", b""):
            return  # a website form that failed: it redirects back with the error
        caller = scope.get("state", {}).get("caller")
        if caller is None:  # refused (the website answers that with a redirect to its login)
            return
        client = scope.get("client")
        try:
            await self.audit.record(
                actor=caller.user.identifier,
                method=scope["method"],
                route=route,
                path=scope["path"],
                status=status,
                address=client[0] if client else None,
            )
        except Exception:  # the change is made: say so, and answer
            log.exception("audit: could not record %s %s", scope["method"], scope["path"])
