"""Project secrets: named values stored encrypted with the instance key, never shown again.

The HTTP layer lists names and dates, sets and deletes; the master's side reads the values a
run needs with `values` (decrypted only there)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestra.clock import Clock
from orchestra.domain.pages import Listing
from orchestra.errors import InvalidInput, NotFound
from orchestra.services.keyring import Keyring
from orchestra.storage import records
from orchestra.storage.engine import Database
from orchestra.storage.schema import project as project_table
from orchestra.storage.schema import project_secret

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a secret: never its value."""

    project: str
    name: str
    creation_date: datetime
    update_date: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "creation_date": self.creation_date,
            "update_date": self.update_date,
        }


def secret_context(project: str, name: str) -> str:
    """The associated data of a project secret's ciphertext: it decrypts only there."""
    return f"secret:{project}:{name}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(
            "a secret's name must be a letter or _ followed by up to 99 letters, digits or _"
        )
    return name


def check_value(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("a secret's value must be a non-empty string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("a secret's value must be valid Unicode (no lone surrogates)") from None
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(f"a secret's value must be at most {MAX_VALUE_BYTES} bytes")
    return value


def _info(row: Any) -> SecretInfo:
    return SecretInfo(row["project"], row["name"], row["creation_date"], row["update_date"])


class SecretService:
    def __init__(self, db: Database, clock: Clock, keyring: Keyring) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring

    async def list_secrets(
        self, project: str, cursor: str | None, limit: int | None
    ) -> Listing[SecretInfo]:
        columns = [c for c in project_secret.c if c.key != "value"]
        async with self.db.read() as conn:
            await self._project(conn, project)
            found = await records.page(
                conn,
                sa.select(*columns).where(project_secret.c.project == project),
                [project_secret.c.name],
                cursor,
                limit,
            )
        return found.map(_info)

    async def put_secret(self, project: str, name: str, value: object) -> tuple[SecretInfo, bool]:
        """Set a secret; returns what may be shown of it and whether it was created."""
        check_name(name)
        ciphertext = self.keyring.encrypt(check_value(value), secret_context(project, name))
        keys = {"project": project, "name": name}
        async with self.db.transaction() as conn:
            await self._project(conn, project)
            now = self.clock.now()
            changed = await records.update(
                conn, project_secret, keys, {"value": ciphertext, "update_date": now}
            )
            if not changed:
                await records.insert(
                    conn,
                    project_secret,
                    {**keys, "value": ciphertext, "creation_date": now, "update_date": now},
                )
            row = await records.fetch_one(conn, project_secret, keys)
        assert row is not None
        return _info(row), not changed

    async def delete_secret(self, project: str, name: str) -> None:
        async with self.db.transaction() as conn:
            await self._project(conn, project)
            if not await records.delete(conn, project_secret, {"project": project, "name": name}):
                raise NotFound(f"no secret {name!r} in project {project!r}")

    async def values(self, project: str, names: Iterable[str]) -> dict[str, str]:
        """The decrypted values of these secrets of `project`; absent names are left out."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        query = sa.select(project_secret.c.name, project_secret.c.value).where(
            project_secret.c.project == project, project_secret.c.name.in_(wanted)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return {
            name: self.keyring.decrypt(value, secret_context(project, name)) for name, value in rows
        }

    async def _project(self, conn: Any, project: str) -> None:
        if await records.fetch_one(conn, project_table, {"identifier": project}) is None:
            raise NotFound(f"no project {project!r}")
