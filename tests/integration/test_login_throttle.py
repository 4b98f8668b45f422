"""The login throttle (orchestra.services.throttle) on a real database: limits per user and
address, per user and per address, the windows, what a success clears, two API servers
counting together, concurrent guesses, and what the table holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestra.errors import TooManyRequests, Unauthenticated
from orchestra.services.container import Services
from orchestra.services.throttle import LoginThrottle
from orchestra.storage.schema import login_failure
from tests.conftest import build_services
from tests.helpers import ManualClock

PASSWORD = "first password 1"


@pytest.fixture
def clocked(clocked_services: Services) -> Services:
    return clocked_services


def throttle_of(services: Services, **limits: float) -> LoginThrottle:
    throttle = LoginThrottle(services.db, services.users.clock, **limits)  # type: ignore[arg-type]
    services.users.throttle = throttle
    return throttle


async def outcome(services: Services, user: str, password: str, address: str) -> str:
    try:
        await services.users.login(user, password, address)
    except Unauthenticated:
        return "401"
    except TooManyRequests as error:
        return f"429 {error}"
    return "200"


async def test_login_throttle_limits_a_user_and_not_another(clocked: Services) -> None:
    await clocked.users.create_user("alice", password=PASSWORD)
    throttle_of(clocked, per_user=3, per_address=100)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert await outcome(clocked, "alice", "wrong", address) == "401"
    # The fourth attempt, from yet another address, right password and all: refused unhashed.
    assert (await outcome(clocked, "alice", PASSWORD, "10.0.0.4")).startswith("429 too many")
    assert await outcome(clocked, "bob", "wrong", "10.0.0.1") == "401"


async def test_login_throttle_limits_an_address_trying_many_users(clocked: Services) -> None:
    await clocked.users.create_user("alice", password=PASSWORD)
    throttle_of(clocked, per_user=100, per_address=4)
    for index in range(4):
        assert await outcome(clocked, f"user{index}", "wrong", "10.0.0.9") == "401"
    assert (await outcome(clocked, "alice", PASSWORD, "10.0.0.9")).startswith("429")
    assert await outcome(clocked, "alice", PASSWORD, "10.0.0.10") == "200"


async def test_login_success_clears_the_user_not_the_address_and_is_no_failure(
    clocked: Services,
) -> None:
    await clocked.users.create_user("alice", password=PASSWORD)
    throttle_of(clocked, per_user=2, per_address=3)
    assert await outcome(clocked, "alice", "wrong", "a") == "401"
    assert await outcome(clocked, "alice", PASSWORD, "a") == "200"  # 1 failure of 2: let in
    assert await outcome(clocked, "alice", "wrong", "a") == "401"  # the user's count restarted
    assert await outcome(clocked, "alice", PASSWORD, "a") == "200"
    # The address holds its two failures (the successes did not count): one more is its third.
    assert await outcome(clocked, "carol", "wrong", "a") == "401"
    assert (await outcome(clocked, "carol", "wrong", "a")).startswith("429")


async def test_login_throttle_window_slides_and_says_how_long_to_wait(
    clocked: Services, clock: ManualClock
) -> None:
    await clocked.users.create_user("alice", password=PASSWORD)
    throttle_of(clocked, per_user_and_address=2, window_seconds=600)
    assert await outcome(clocked, "alice", "wrong", "a") == "401"
    clock.advance(100)
    assert await outcome(clocked, "alice", "wrong", "a") == "401"
    clock.advance(100)
    refused = await outcome(clocked, "alice", PASSWORD, "a")
    assert refused == "429 too many failed logins; try again in 401 seconds", refused
    clock.advance(401)  # the first failure has left the window, the second not
    assert await outcome(clocked, "alice", PASSWORD, "a") == "200"
    async with clocked.db.read() as conn:
        remaining = (
            await conn.execute(sa.select(sa.func.count()).select_from(login_failure))
        ).scalar()
    assert remaining == 1  # the second failure, against the address; nothing about alice


async def test_login_throttle_is_shared_by_two_api_servers(
    database_url: str, tmp_path: Path
) -> None:
    first = build_services(database_url, tmp_path / "first")
    second = build_services(database_url, tmp_path / "second")
    try:
        await first.users.create_user("alice", password=PASSWORD)
        for services in (first, second):
            throttle_of(services, per_user=4, per_address=100)
        answers = [
            await outcome(services, "alice", "wrong", f"10.0.0.{n}")
            for n, services in enumerate((first, second, first, second, first, second))
        ]
        assert answers[:4] == ["401"] * 4
        assert all(answer.startswith("429") for answer in answers[4:]), answers
    finally:
        await first.close()
        await second.close()


async def test_concurrent_guesses_cannot_pass_the_limit_together(clocked: Services) -> None:
    await clocked.users.create_user("alice", password=PASSWORD)
    throttle_of(clocked, per_user=5, per_address=1000)
    answers = await asyncio.gather(
        *(outcome(clocked, "alice", f"guess {n}", f"10.1.0.{n}") for n in range(20))
    )
    assert sorted(a[:3] for a in answers) == ["401"] * 5 + ["429"] * 15, answers


async def test_login_failure_rows_hold_digests_not_names_or_addresses(clocked: Services) -> None:
    throttle_of(clocked, per_user=10, per_address=10)
    assert await outcome(clocked, "mallory-was-here", "wrong", "192.0.2.77") == "401"
    async with clocked.db.read() as conn:
        keys = (await conn.execute(sa.select(login_failure.c.key))).scalars().all()
    assert len(keys) == 3  # the user from that address, the user, the address
    assert all(len(key) == 64 and "mallory" not in key and "192.0.2" not in key for key in keys)


async def test_a_huge_user_name_is_counted_in_a_fixed_size_key(clocked: Services) -> None:
    throttle_of(clocked, per_user=1, per_address=100)
    name = "x" * 100_000
    assert await outcome(clocked, name, "wrong", "a") == "401"
    assert (await outcome(clocked, name, "wrong", "b")).startswith("429")


async def test_purge_deletes_the_failures_out_of_the_window_of_every_key(
    clocked: Services, clock: ManualClock
) -> None:
    throttle = throttle_of(
        clocked, per_user=10, per_address=10, window_seconds=600, user_window_seconds=600
    )
    for user in ("once-and-never-again", "someone"):
        assert await outcome(clocked, user, "wrong", "10.9.9.9") == "401"
    clock.advance(601)
    assert await outcome(clocked, "someone", "wrong", "10.9.9.8") == "401"
    # The first two failures' rows but the one for `someone` its new attempt deleted.
    assert await throttle.purge() == 5
    async with clocked.db.read() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(login_failure))).scalar()
    assert left == 3  # the recent failure's
    assert await throttle.purge() == 0


async def test_guesses_from_elsewhere_do_not_lock_the_user_out_of_their_own_address(
    clocked: Services,
) -> None:
    """One source gets 10 guesses at a user; the user, from their own address, still logs in,
    until the account-wide cap (100 an hour by default; 15 here) is reached."""
    await clocked.users.create_user("alice", password=PASSWORD)
    throttle_of(clocked, per_user_and_address=10, per_user=15, per_address=1000)
    answers = [await outcome(clocked, "alice", "guess", "203.0.113.7") for _ in range(11)]
    assert answers[:10] == ["401"] * 10
    assert answers[10].startswith("429")
    assert await outcome(clocked, "alice", PASSWORD, "192.0.2.1") == "200"
    # The success forgave the user-wide count: another source gets its own 10, then the cap.
    for n in range(5):
        for _ in range(3):
            await outcome(clocked, "alice", "guess", f"198.51.100.{n}")
    assert (await outcome(clocked, "alice", PASSWORD, "192.0.2.1")).startswith("429")
