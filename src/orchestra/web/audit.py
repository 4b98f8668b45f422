"""Each change made through the API or the website goes into the audit log (services/audit.py):
a request that changes something (POST, PUT, PATCH, DELETE) and succeeded (status below 400),
with the caller the route authenticated.

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
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, tracking_send)
        route = getattr(scope.get("route"), "path", None)
        if not route or not 0 < status < 400 or route.endswith(UNRECORDED):
            return
        caller = scope.get("state", {}).get("caller")
        client = scope.get("client")
        try:
            await self.audit.record(
                actor=caller.user.identifier if caller is not None else None,
                method=scope["method"],
                route=route,
                path=scope["path"],
                status=status,
                address=client[0] if client else None,
            )
        except Exception:  # the change is made and answered: say so, and go on
            log.exception("audit: could not record %s %s", scope["method"], scope["path"])
