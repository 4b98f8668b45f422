"""Login throttling, shared by every API server.

Three sliding windows of failures, kept in the database (table `login_failure`) so that several
API servers count them together:
- a user from one address: 10 failures in 15 minutes (one source guessing one password);
- a user from anywhere: 100 failures in an hour (OWASP ASVS's cap for one account), so that an
  attacker elsewhere locks a user out only with that many failures from ten addresses or more;
- an address, whatever the users: 50 failures in 15 minutes (one source trying many users).

An attempt is counted before its password is checked (the check takes tens of milliseconds of
hashing), and attempts on the same keys are counted one at a time (a transaction lock):
concurrent guesses cannot all pass a count that none of them has added to yet. A successful
login takes its own attempt back and clears the user's failures, not the address's. Past a
limit, logins for that key are refused with 429 (before any hashing) until the oldest failure
leaves the window. Unknown users count like known ones, so the answers do not reveal which
users exist. Keys are digests: the database holds neither the names tried nor the addresses.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
class Rule:
    limit: int
    window: timedelta


@dataclass(frozen=True)
class Attempt:
    """A login attempt counted by `LoginThrottle.begin`."""

    keys: dict[str, str]  # per rule
    address_failure: int  # the row that counts it against the address


class LoginThrottle:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        per_user_and_address: int = 10,
        per_user: int = 100,
        per_address: int = 50,
        window_seconds: float = 900.0,
        user_window_seconds: float = 3600.0,
    ) -> None:
        self.db = db
        self.clock = clock
        window = timedelta(seconds=window_seconds)
        self.rules = {
            "pair": Rule(per_user_and_address, window),
            "user": Rule(per_user, timedelta(seconds=user_window_seconds)),
            "address": Rule(per_address, window),
        }
        self.window = max(rule.window for rule in self.rules.values())  # rows kept this long

    async def begin(self, user: str, address: str) -> Attempt:
        """Count an attempt against the user, the address and the pair, or raise
        TooManyRequests if any is at its limit (the attempt then counts for nothing)."""
        now = self.clock.now()
        keys = {
            "pair": _key("pair", f"{user}\0{address}"),
            "user": _key("user", user),
            "address": _key("address", address),
        }
        cutoffs = {keys[kind]: now - rule.window for kind, rule in self.rules.items()}
        async with self.db.transaction() as conn:
            if not self.db.one_writer:  # SQLite's write transactions already take turns
                for key in sorted(keys.values()):
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_of(key))))
            # Only these keys' old failures: a login for someone else waits on no lock here
            # (the rest go in `purge`, from the master's maintenance).
            await conn.execute(sa.delete(login_failure).where(_any_of(cutoffs, operator.le)))
            recent = (
                await conn.execute(
                    sa.select(
                        login_failure.c.key,
                        sa.func.count().label("failures"),
                        sa.func.min(login_failure.c.date).label("oldest"),
                    )
                    .where(_any_of(cutoffs, operator.gt))
                    .group_by(login_failure.c.key)
                )
            ).all()
            counted = {row.key: row for row in recent}
            for kind, key in keys.items():
                row, rule = counted.get(key), self.rules[kind]
                if row is not None and row.failures >= rule.limit:
                    wait = int((row.oldest + rule.window - now).total_seconds()) + 1
                    raise TooManyRequests(
                        f"too many failed logins; try again in {max(wait, 1)} seconds"
                    )
            await conn.execute(
                sa.insert(login_failure),
                [{"key": keys[kind], "date": now} for kind in ("pair", "user")],
            )
            inserted = await conn.execute(
                sa.insert(login_failure)
                .values(key=keys["address"], date=now)
                .returning(login_failure.c.identifier)
            )
            return Attempt(keys=keys, address_failure=inserted.scalar_one())

    async def succeeded(self, attempt: Attempt) -> None:
        """The attempt logged in: it is no failure, and the user's earlier ones are forgiven."""
        async with self.db.transaction() as conn:
            await conn.execute(
                sa.delete(login_failure).where(
                    sa.or_(
                        login_failure.c.key.in_([attempt.keys["pair"], attempt.keys["user"]]),
                        login_failure.c.identifier == attempt.address_failure,
                    )
                )
            )

    async def purge(self) -> int:
        """Delete every failure out of the longest window (those of keys tried once and never
        again); the number deleted."""
        async with self.db.transaction() as conn:
            result = await conn.execute(
                sa.delete(login_failure).where(
                    login_failure.c.date <= self.clock.now() - self.window
                )
            )
        return int(result.rowcount)


def _any_of(
    cutoffs: dict[str, datetime], compare: Callable[[Any, datetime], Any]
) -> sa.ColumnElement[bool]:
    """The rows of these keys whose date compares so with the key's own cutoff."""
    return sa.or_(
        *(
            sa.and_(login_failure.c.key == key, compare(login_failure.c.date, cutoff))
            for key, cutoff in cutoffs.items()
        )
    )
