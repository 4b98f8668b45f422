"""Login throttling per user and per client address, shared by every API server.

A sliding window of failures kept in the database (table `login_failure`), so that several API
servers count them together. An attempt is counted before its password is checked (the check
takes tens of milliseconds of hashing), and attempts on the same key are counted one at a time
(a transaction lock): concurrent guesses cannot all pass a count that none of them has added to
yet. A successful login takes its own attempt back and clears the user's failures, not the
address's. Past a limit, logins for that key are refused with 429 (before any hashing) until
the oldest failure leaves the window. Unknown users count like known ones, so the answers do
not reveal which users exist. Keys are digests: the database holds neither the names tried nor
the addresses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from orchestra.clock import Clock
from orchestra.errors import TooManyRequests
from orchestra.storage.engine import Database
from orchestra.storage.schema import login_failure


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}\0{value}".encode(errors="surrogatepass")).hexdigest()


def _lock_of(key: str) -> int:
    """A PostgreSQL advisory lock number for a key (60 bits of its digest): attempts on the
    same user or address count one after the other, on whichever API server."""
    return int(key[:15], 16)


@dataclass(frozen=True)
class Attempt:
    """A login attempt counted by `LoginThrottle.begin`."""

    user: str
    address_failure: int  # the row that counts it against the address


class LoginThrottle:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        per_user: int = 10,
        per_address: int = 50,
        window_seconds: float = 900.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = {"user": per_user, "address": per_address}
        self.window = timedelta(seconds=window_seconds)

    async def begin(self, user: str, address: str) -> Attempt:
        """Count an attempt against the user and the address, or raise TooManyRequests if
        either is at its limit (the attempt then counts for nothing)."""
        now = self.clock.now()
        cutoff = now - self.window
        keys = {"user": _key("user", user), "address": _key("address", address)}
        async with self.db.transaction() as conn:
            if not self.db.is_sqlite:  # SQLite's write transactions already take turns
                for key in sorted(keys.values()):
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_of(key))))
            # Only these keys' old failures: a login for someone else waits on no lock here
            # (the rest go in `purge`, from the master's maintenance).
            await conn.execute(
                sa.delete(login_failure).where(
                    login_failure.c.key.in_(list(keys.values())), login_failure.c.date <= cutoff
                )
            )
            recent = (
                await conn.execute(
                    sa.select(
                        login_failure.c.key,
                        sa.func.count().label("failures"),
                        sa.func.min(login_failure.c.date).label("oldest"),
                    )
                    .where(login_failure.c.key.in_(list(keys.values())))
                    .where(login_failure.c.date > cutoff)
                    .group_by(login_failure.c.key)
                )
            ).all()
            counted = {row.key: row for row in recent}
            for kind, key in keys.items():
                row = counted.get(key)
                if row is not None and row.failures >= self.limits[kind]:
                    wait = int((row.oldest + self.window - now).total_seconds()) + 1
                    raise TooManyRequests(
                        f"too many failed logins; try again in {max(wait, 1)} seconds"
                    )
            await conn.execute(sa.insert(login_failure).values(key=keys["user"], date=now))
            inserted = await conn.execute(
                sa.insert(login_failure)
                .values(key=keys["address"], date=now)
                .returning(login_failure.c.identifier)
            )
            return Attempt(user=user, address_failure=inserted.scalar_one())

    async def succeeded(self, attempt: Attempt) -> None:
        """The attempt logged in: it is no failure, and the user's earlier ones are forgiven."""
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.delete(login_failure).where(
                    sa.or_(
                        login_failure.c.key == _key("user", attempt.user),
                        login_failure.c.identifier == attempt.address_failure,
                    )
                )
            )

    async def purge(self) -> int:
        """Delete every failure out of the window (those of keys tried once and never again);
        the number deleted."""
        async with self.db.transaction() as conn:
            result = await conn.execute(
                sa.delete(login_failure).where(
                    login_failure.c.date <= self.clock.now() - self.window
                )
            )
        return int(result.rowcount)
