"""A project's notifications: create, replace, change, delete, list, and their deliveries'
log. The secret is stored encrypted with the instance key (bound to its project and
notification) and shown as "***"; "***" sent back, or a PATCH without it, keeps it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import Clock
from orchestra.domain.notifications import MASK, is_private_address, parse_notification
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.notify_settings import NotifySettings
from orchestra.services.keyring import Keyring
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import notification as notification_table
from orchestra.storage.schema import notification_delivery as delivery_table
from orchestra.storage.schema import project as project_table

SHOWN_DELIVERY = (
    "message",
    "event",
    "type",
    "status",
    "attempts",
    "next_attempt_date",
    "last_attempt_date",
    "last_status_code",
    "last_error",
    "delivery_date",
    "creation_date",
    "update_date",
)


def secret_context(project: str, identifier: str) -> str:
    """The associated data of a notification secret's ciphertext: it decrypts only there."""
    return f"notification:{project}:{identifier}"


def shown(row: Mapping[str, Any]) -> dict[str, Any]:
    """A notification as the API shows it: its secret masked."""
    return {
        "project": row["project"],
        "identifier": row["identifier"],
        "events": list(row["events"]),
        "jobs": row["jobs"],
        "pipelines": row["pipelines"],
        "url": row["url"],
        "email": row["email"],
        "secret": MASK if row["secret"] else None,
        "format": row["format"],
        "is_enabled": row["is_enabled"],
        "creation_date": row["creation_date"],
        "update_date": row["update_date"],
    }


def shown_delivery(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"identifier": row["identifier"], **{k: row[k] for k in SHOWN_DELIVERY}}


def check_target(values: Mapping[str, Any], settings: NotifySettings) -> None:
    """Refuse a URL that names a private address when those are forbidden (a host name is
    checked where it resolves, at each attempt), and an e-mail without an SMTP server."""
    if values["email"] is not None and settings.smtp is None:
        raise InvalidInput("e-mail notifications need an SMTP server (ORCHESTRA_SMTP_URL)")
    if values["url"] is None or settings.allow_private:
        return
    host = urlsplit(values["url"]).hostname or ""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        raise InvalidInput("url: private and loopback addresses are not allowed here")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    if is_private_address(host):
        raise InvalidInput("url: private and loopback addresses are not allowed here")


def seal(
    keyring: Keyring, project: str, values: dict[str, Any], stored: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`values` with its secret encrypted: the mask keeps the stored ciphertext, the same
    plain value too (so that an apply twice changes nothing)."""
    secret = values.get("secret")
    context = secret_context(project, values["identifier"])
    old = stored["secret"] if stored is not None else None
    if secret == MASK:
        if old is None:
            raise InvalidInput('secret: "***" keeps a stored secret, and there is none')
        return {**values, "secret": old}
    if secret is None:
        return {**values, "secret": None}
    if old is not None and keyring.decrypt(old, context) == secret:
        return {**values, "secret": old}
    return {**values, "secret": keyring.encrypt(secret, context)}


async def put_in(
    conn: AsyncConnection,
    keyring: Keyring,
    settings: NotifySettings,
    project: str,
    raw: Mapping[str, Any],
) -> tuple[str, str]:
    """Create or replace one notification in the caller's transaction (apply): its
    identifier and created, updated or unchanged."""
    values = parse_notification(raw)
    check_target(values, settings)
    keys = {"project": project, "identifier": values["identifier"]}
    stored = await records.fetch_one(conn, notification_table, keys, for_update=True)
    values = seal(keyring, project, values, stored)
    if stored is None:
        await records.insert(conn, notification_table, {**values, **keys})
        return values["identifier"], "created"
    if all(stored[k] == v for k, v in values.items()):
        return values["identifier"], "unchanged"
    await records.update(conn, notification_table, keys, values)
    return values["identifier"], "updated"


class NotificationService:
    def __init__(
        self, db: Database, clock: Clock, keyring: Keyring, settings: NotifySettings
    ) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring
        self.settings = settings

    async def list_notifications(
        self, project: str, cursor: str | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        async with self.db.read() as conn:
            await _project(conn, project)
            query = sa.select(notification_table).where(notification_table.c.project == project)
            rows, next_cursor = await records.page(
                conn, query, [notification_table.c.identifier], cursor, limit
            )
        return [shown(dict(r)) for r in rows], next_cursor

    async def get(self, project: str, identifier: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return shown(await _notification(conn, project, identifier))

    async def create(self, project: str, data: Mapping[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            await _project(conn, project)
            values = parse_notification(data)
            check_target(values, self.settings)
            keys = {"project": project, "identifier": values["identifier"]}
            if await records.fetch_one(conn, notification_table, keys) is not None:
                raise Conflict(f"notification {values['identifier']!r} already exists")
            values = seal(self.keyring, project, values, None)
            await records.insert(conn, notification_table, {**values, **keys})
            return shown(await _notification(conn, project, values["identifier"]))

    async def put(
        self, project: str, identifier: str, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns the notification and whether it was created."""
        body = _named(data, identifier)
        async with self.db.transaction() as conn:
            await _project(conn, project)
            _, action = await put_in(conn, self.keyring, self.settings, project, body)
            return shown(await _notification(conn, project, identifier)), action == "created"

    async def patch(self, project: str, identifier: str, data: Mapping[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            stored = await _notification(conn, project, identifier)
            merged = {k: stored[k] for k in ("events", "jobs", "pipelines", "format", "is_enabled")}
            merged["secret"] = MASK if stored["secret"] else None
            if "url" in data or "email" in data:  # one replaces the other
                merged.update(url=None, email=None)
            else:
                merged.update(url=stored["url"], email=stored["email"])
            merged.update(_named(data, identifier))
            await put_in(conn, self.keyring, self.settings, project, merged)
            return shown(await _notification(conn, project, identifier))

    async def delete(self, project: str, identifier: str) -> None:
        async with self.db.transaction() as conn:
            await _project(conn, project)
            keys = {"project": project, "identifier": identifier}
            if not await records.delete(conn, notification_table, keys):
                raise NotFound(f"no notification {identifier!r} in project {project!r}")

    async def deliveries(
        self, project: str, identifier: str, cursor: str | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The notification's deliveries, newest first."""
        async with self.db.read() as conn:
            await _notification(conn, project, identifier)
            query = sa.select(delivery_table).where(
                delivery_table.c.project == project,
                delivery_table.c.notification == identifier,
            )
            rows, next_cursor = await records.page(
                conn,
                query,
                [delivery_table.c.identifier],
                cursor,
                limit,
                descending=True,
                types=(int,),
            )
        return [shown_delivery(dict(r)) for r in rows], next_cursor


def _named(data: Mapping[str, Any], identifier: str) -> dict[str, Any]:
    given = data.get("identifier", identifier)
    if given != identifier:
        raise InvalidInput(f"identifier {given!r} does not match the path's {identifier!r}")
    return {**data, "identifier": identifier}


async def _project(conn: AsyncConnection, project: str) -> None:
    if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
        raise NotFound(f"no project {project!r}")


async def _notification(conn: AsyncConnection, project: str, identifier: str) -> Mapping[str, Any]:
    row = await records.fetch_one(
        conn, notification_table, {"project": project, "identifier": identifier}
    )
    if row is None:
        await _project(conn, project)
        raise NotFound(f"no notification {identifier!r} in project {project!r}")
    return row
