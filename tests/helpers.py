"""Small shared helpers: credentials headers, a controllable clock, a recording HTTP client
and the scan that no response leaks a secret or a hash."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from orchestra.services.container import Services
from orchestra.storage import records
from orchestra.storage.schema import worker as worker_table

API = "/api/v1"
# Fields that must never appear in any response (a token's `secret` only in its creation answer).
FORBIDDEN_FIELDS = ("password", "old_password", "new_password", "hash_function_salt")


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class ManualClock:
    """A Clock whose time moves only when the test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    text: str


@dataclass
class RecordingClient:
    """An httpx.AsyncClient wrapper that keeps every exchange, for the secret scans."""

    http: httpx.AsyncClient
    exchanges: list[Exchange] = field(default_factory=list)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, url, **kwargs)
        await response.aread()
        self.exchanges.append(
            Exchange(method, response.request.url.path, response.status_code, response.text)
        )
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)


def _keys(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def is_token_creation(exchange: Exchange) -> bool:
    return (
        exchange.method == "POST" and exchange.path.endswith("/tokens") and exchange.status == 201
    )


def leaks(exchanges: Iterable[Exchange], secret_values: Iterable[str] = ()) -> list[str]:
    """Every way these responses leak: a forbidden field, a `secret` outside a token creation,
    a `hash_function*` field, or the text of a known secret, hash or salt."""
    values = [v for v in secret_values if v]
    problems: list[str] = []
    for exchange in exchanges:
        if exchange.path.endswith("/openapi.json"):
            continue  # the schema names the request fields; it carries no data
        where = f"{exchange.method} {exchange.path} -> {exchange.status}"
        for value in values:
            if value in exchange.text:
                problems.append(f"{where}: carries a secret value")
        try:
            body = json.loads(exchange.text) if exchange.text else None
        except ValueError:
            continue
        for key, item in _keys(body):
            if key in FORBIDDEN_FIELDS or key.startswith("hash_function"):
                problems.append(f"{where}: has field {key!r}")
            # A job parameter's `secret` flag is a boolean; a token secret is a string; a
            # write-only secret (a webhook's, a notification's) is shown as "***".
            shown = isinstance(item, str) and item != "***"
            if key == "secret" and shown and not is_token_creation(exchange):
                problems.append(f"{where}: has field 'secret'")
    return problems


async def stored_secret_values(services: Services) -> list[str]:
    """Every hash and salt stored for passwords and tokens."""
    from orchestra.storage.schema import user_authentication

    async with services.db.read() as conn:
        rows = (await conn.execute(sa.select(user_authentication))).mappings().all()
    return [v for r in rows for v in (r["secret"], r["hash_function_salt"])]


async def insert_worker(
    services: Services, identifier: str, owner: str, *, is_active: bool = False
) -> None:
    """A worker row, written through the storage layer (no worker process in these tests)."""
    async with services.db.transaction() as conn:
        await records.insert(
            conn,
            worker_table,
            {
                "identifier": identifier,
                "owner": owner,
                "version": "test",
                "display_name": identifier,
                "properties": {"os": "linux"},
                "is_enabled": True,
                "is_active": is_active,
                "should_disconnect": False,
                "executors": 1,
                "master": None,
                "last_seen_date": None,
            },
        )
