"""The notifications sender: due deliveries claimed with a lease (so that across masters each
attempt is made once), sent, and their outcome recorded.

A notification's deliveries go one after the other: only the oldest pending one of each is
ever due, so its next event waits until this one is delivered or given up. A failed attempt
is tried again after a delay with jitter (domain/notifications.py `next_delay`) until the
delivery is older than `retry_for` (a day), then it is `failed`. A sender that dies during an
attempt leaves its lease to run out: the attempt is made again (at least once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa

from orchestra.clock import Clock
from orchestra.domain import notifications as rules
from orchestra.notify_settings import NotifySettings, SmtpSettings
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.services.notifications import secret_context
from orchestra.storage import notifications as store
from orchestra.storage.engine import Database
from orchestra.storage.schema import notification as notification_table

log = logging.getLogger(__name__)
CLAIM = 20  # deliveries claimed per turn, sent at once
LEASE_MARGIN = 30.0  # seconds beyond an attempt's timeout before another sender may try
ANSWER_SHOWN = 200  # bytes of a refusing answer's body kept in last_error
KEEP_FINISHED = timedelta(days=7)  # delivered and failed deliveries are shown this long


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


class Refused(Exception):
    """The target may not be reached (a private address where those are forbidden)."""


class NotificationSender:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        keyring: Keyring,
        settings: NotifySettings,
        holder: str,
    ) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring
        self.settings = settings
        self.holder = holder
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def tick(self) -> int:
        """Claim the due deliveries, send them, record each outcome; how many were tried."""
        now = self.clock.now()
        lease = self.settings.timeout + LEASE_MARGIN
        async with self.db.read() as conn:  # no write transaction while nothing is due
            if not await store.any_due(conn, now):
                return 0
        async with self.db.transaction() as conn:
            claimed = await store.claim_due(conn, self.holder, now, lease, CLAIM)
            keys = {(d["project"], d["notification"]) for d in claimed}
            targets = await _targets(conn, keys)
        if not claimed:
            return 0
        await asyncio.gather(
            *(self._attempt(d, targets.get((d["project"], d["notification"]))) for d in claimed)
        )
        return len(claimed)

    async def next_due_in(self, default: float) -> float:
        """Seconds until the next delivery is due (at most `default`)."""
        async with self.db.read() as conn:
            due = await store.next_due_date(conn)
        if due is None:
            return default
        return max(0.0, min(default, (due - self.clock.now()).total_seconds()))

    async def prune(self) -> int:
        """Forget deliveries delivered or given up more than a week ago."""
        async with self.db.transaction() as conn:
            return await store.delete_finished_before(conn, self.clock.now() - KEEP_FINISHED)

    async def _attempt(self, delivery: Mapping[str, Any], target: Mapping[str, Any] | None) -> None:
        try:
            if target is None or not target["is_enabled"]:
                outcome = Outcome(False, error="the notification is disabled")
                await self._record(delivery, outcome, give_up=True)
                return
            outcome = await self._send(delivery, target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one delivery's failure is recorded, never the loop's end
            log.warning("notification %s: attempt failed", delivery["message"], exc_info=True)
            outcome = Outcome(False, error=f"{type(exc).__name__}: {exc}")
        await self._record(delivery, outcome)

    async def _send(self, delivery: Mapping[str, Any], target: Mapping[str, Any]) -> Outcome:
        payload = json.loads(delivery["payload"])
        secret = None
        if target["secret"]:
            try:
                context = secret_context(target["project"], target["identifier"])
                secret = self.keyring.decrypt(target["secret"], context)
            except KeyringError as exc:
                return Outcome(False, error=str(exc))
        if target["email"] is not None:
            return await self._mail(delivery, payload, target["email"])
        if target["format"] == "slack":
            body = json.dumps(rules.slack_body(delivery["type"], payload["data"])).encode()
        else:
            body = delivery["payload"].encode("utf-8")
        stamp = int(self.clock.now().timestamp())
        headers = rules.headers(secret, delivery["message"], stamp, body)
        headers["user-agent"] = "Orchestra-Notifications"
        return await self._post(target["url"], headers, body)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        extensions: dict[str, Any] = {}
        client = self._http()
        try:
            # The whole attempt within the timeout (httpx's counts each read: a receiver that
            # sends a byte at a time would hold this sender's turn, every project's, for ever).
            async with asyncio.timeout(self.settings.timeout):
                return await self._exchange(client, url, headers, body, extensions)
        except Refused as exc:
            return Outcome(False, error=str(exc))
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(False, error=f"no answer within {self.settings.timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(False, error=rules.error_text(f"{type(exc).__name__}: {exc}"))

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        url: str,
        headers: dict[str, str],
        body: bytes,
        extensions: dict[str, Any],
    ) -> Outcome:
        if not self.settings.allow_private:
            extensions["sni_hostname"] = urlsplit(url).hostname or ""
            url, headers["host"] = await self._pinned(url)
        request = client.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions
        )
        # Streamed: of the answer's body, only its start is read (a receiver that answers
        # with gigabytes costs nothing), and only to show why it refused.
        answer = await client.send(request, stream=True)
        try:
            start = b""
            if not 200 <= answer.status_code < 300:
                async for chunk in answer.aiter_raw():
                    start += chunk
                    if len(start) >= ANSWER_SHOWN:
                        break
        finally:
            await answer.aclose()
        if 200 <= answer.status_code < 300:
            return Outcome(True, answer.status_code)
        text = start[:ANSWER_SHOWN].decode("utf-8", "replace").strip() or answer.reason_phrase
        return Outcome(
            False, answer.status_code, rules.error_text(f"HTTP {answer.status_code}: {text}")
        )

    async def _pinned(self, url: str) -> tuple[str, str]:
        """The URL with its host replaced by the address it resolves to, after checking that
        every address is public (the connection goes to the checked one: no DNS rebinding);
        and its Host header."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from None
        addresses = [str(info[4][0]) for info in found]
        if not addresses or any(rules.is_private_address(a) for a in addresses):
            raise Refused(f"{host} resolves to a private address, which is not allowed here")
        address = addresses[0]
        shown = f"[{address}]" if ":" in address else address
        netloc = f"{shown}:{parts.port}" if parts.port else shown
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=netloc)), host_header

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.timeout, follow_redirects=False, trust_env=False
            )
        return self._client

    async def _mail(self, delivery: Mapping[str, Any], payload: Any, address: str) -> Outcome:
        smtp = self.settings.smtp
        if smtp is None:
            return Outcome(False, error="no SMTP server is configured (ORCHESTRA_SMTP_URL)")
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = address
        # One line (a run's reason may hold several: a header may not), of a readable length.
        subject = " ".join(rules.summary(delivery["type"], payload["data"]).split())
        message["Subject"] = rules.error_text(f"[Orchestra] {subject}", 200)
        message["X-Orchestra-Event"] = delivery["type"]
        message["X-Orchestra-Delivery"] = delivery["message"]
        text = rules.summary(delivery["type"], payload["data"])
        message.set_content(f"{text}\n\n{json.dumps(payload, indent=2, sort_keys=True)}\n")
        try:
            await asyncio.to_thread(_smtp_send, smtp, message, self.settings.timeout)
        except (smtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "smtp_code", None)
            return Outcome(False, code, rules.error_text(f"{type(exc).__name__}: {exc}"))
        return Outcome(True)

    async def _record(
        self, delivery: Mapping[str, Any], outcome: Outcome, *, give_up: bool = False
    ) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {
            "attempts": delivery["attempts"] + (0 if give_up else 1),
            "last_attempt_date": now,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "update_date": now,
        }
        if outcome.delivered:
            values.update(status=store.DELIVERED, delivery_date=now, next_attempt_date=None)
        else:
            delay = rules.next_delay(delivery["retry_delay"], self.settings.first_retry)
            expired = now + timedelta(seconds=delay) - delivery["creation_date"]
            if give_up or expired.total_seconds() > self.settings.retry_for:
                values.update(status=store.FAILED, next_attempt_date=None)
            else:
                values.update(next_attempt_date=now + timedelta(seconds=delay), retry_delay=delay)
        async with self.db.transaction() as conn:
            await store.record_attempt(conn, delivery["identifier"], self.holder, values)
        log.info(
            "notification %s/%s: %s %s %s",
            delivery["project"],
            delivery["notification"],
            delivery["message"],
            delivery["type"],
            "delivered" if outcome.delivered else f"not delivered ({outcome.error})",
        )


def _smtp_send(smtp: SmtpSettings, message: EmailMessage, timeout: float) -> None:
    """Send one message (in a thread: smtplib blocks)."""
    client: smtplib.SMTP
    if smtp.scheme == "smtps":
        client = smtplib.SMTP_SSL(
            smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    with client:
        if smtp.scheme == "smtp+starttls":
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            client.login(smtp.user, smtp.password)
        client.send_message(message)


async def _targets(
    conn: Any, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], Mapping[str, Any]]:
    if not keys:
        return {}
    query = sa.select(notification_table).where(
        sa.tuple_(notification_table.c.project, notification_table.c.identifier).in_(sorted(keys))
    )
    rows = (await conn.execute(query)).mappings()
    return {(r["project"], r["identifier"]): r for r in rows}
