"""The change log (storage/event_log.py) on both engines: rows written in the changes'
transactions (coalesced), read in id order without skipping an id that commits late
(services/event_stream.py's LogCursor, with two real transactions on PostgreSQL), and pruned
without losing what the notifications relay has not read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from orchestra.services import change_log
from orchestra.services.container import Services
from orchestra.services.event_stream import LogCursor, load
from orchestra.storage import event_log
from orchestra.storage.event_log import Change
from orchestra.storage.schema import event_log as log_table


async def _rows(services: Services) -> list[dict[str, Any]]:
    async with services.db.read() as conn:
        return await event_log.read_after(conn, 0, 1000)


def test_changes_of_one_subject_are_coalesced() -> None:
    changes = [
        Change("run.created", "p", "r1", "pending"),
        Change("run.updated", "p", "r2", "running"),
        Change("run.updated", "p", "r1", "running"),
        Change("run.updated", "p", "r2", "succeeded"),
        Change("schedule.fired", "p", "s", "fired"),
        Change("schedule.fired", "p", "s", "fired"),
    ]
    assert event_log.coalesce(changes) == [
        Change("run.created", "p", "r1", "running"),
        Change("run.updated", "p", "r2", "succeeded"),
        Change("schedule.fired", "p", "s", "fired"),
        Change("schedule.fired", "p", "s", "fired"),
    ]


async def test_a_trigger_and_a_cancel_are_logged_in_their_transactions(
    services: Services,
) -> None:
    await services.projects.put_project("p", {})
    await services.projects.put_job("p", "j", {"steps": [{"name": "s", "command": ["true"]}]})
    run = await services.runs.trigger("p", "j", {}, {"type": "api", "user": "admin"})
    await services.runs.cancel("p", run.identifier)
    rows = await _rows(services)
    assert [(r["type"], r["project"], r["subject"], r["status"]) for r in rows] == [
        ("run.created", "p", run.identifier, "pending"),
        ("run.updated", "p", run.identifier, "cancelled"),
    ]
    assert rows[0]["identifier"] < rows[1]["identifier"]
    # A transaction that fails leaves no row.
    with pytest.raises(RuntimeError):
        async with services.db.transaction() as conn:
            await event_log.append(conn, [Change("run.updated", "p", run.identifier, "x")])
            raise RuntimeError("rolled back")
    assert len(await _rows(services)) == 2
    async with services.db.read() as conn:
        found = await load(conn, [_as_event(rows[-1])])
    assert found[("run", run.identifier, "p")].status.value == "cancelled"


def _as_event(row: dict[str, object]):  # type: ignore[no-untyped-def]
    from orchestra.services.event_stream import Event

    return Event(
        int(row["identifier"]),  # type: ignore[call-overload]
        str(row["type"]),
        row["project"],  # type: ignore[arg-type]
        str(row["subject"]),
        row["status"],  # type: ignore[arg-type]
    )


async def _insert(services: Services, identifier: int) -> None:
    async with services.db.transaction() as conn:
        await conn.execute(
            log_table.insert(),
            {
                "identifier": identifier,
                "type": "run.updated",
                "project": "p",
                "subject": f"r{identifier}",
                "status": "running",
                "date": services.clock.now(),
            },
        )


async def test_the_cursor_waits_for_a_missing_id_then_gives_up(services: Services) -> None:
    now = [0.0]
    cursor = LogCursor(0, gap_seconds=3.0, clock=lambda: now[0])
    for identifier in (1, 2, 4):
        await _insert(services, identifier)
    async with services.db.read() as conn:
        assert [e.identifier for e in await cursor.read(conn)] == [1, 2]
        assert cursor.waiting
        now[0] = 2.0
        assert await cursor.read(conn) == []  # 3 may still commit
    await _insert(services, 3)
    async with services.db.read() as conn:
        assert [e.identifier for e in await cursor.read(conn)] == [3, 4]
        assert not cursor.waiting
    await _insert(services, 6)  # 5 never comes (a rolled-back transaction's)
    async with services.db.read() as conn:
        assert await cursor.read(conn) == []
        now[0] = 4.0
        assert await cursor.read(conn) == []
        now[0] = 7.5
        assert [e.identifier for e in await cursor.read(conn)] == [6]


@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
async def test_an_id_committed_after_a_later_one_is_not_skipped(services: Services) -> None:
    """PostgreSQL: transaction A takes id n, B takes n+1 and commits first; the reader sees
    n+1 alone and must wait for n."""
    async with services.db.transaction() as conn:
        await event_log.append(conn, [Change("run.created", "p", "before", "pending")])
    cursor = LogCursor(0, gap_seconds=30.0)
    async with services.db.read() as conn:
        assert [e.subject for e in await cursor.read(conn)] == ["before"]
    first = await services.db.engine.connect()
    try:
        await first.begin()
        await event_log.append(first, [Change("run.created", "p", "first", "pending")])
        async with services.db.transaction() as conn:
            await event_log.append(conn, [Change("run.created", "p", "second", "pending")])
        async with services.db.read() as conn:
            assert await cursor.read(conn) == []  # "second" is there, "first" is not yet
        await first.commit()
    finally:
        await first.close()
    async with services.db.read() as conn:
        assert [e.subject for e in await cursor.read(conn)] == ["first", "second"]


async def test_pruning_keeps_two_hours_and_what_the_relay_has_not_read(
    services: Services,
) -> None:
    now = services.clock.now()
    async with services.db.transaction() as conn:
        for hours, subject in ((5, "old"), (3, "older than kept"), (1, "recent")):
            await event_log.append(
                conn, [Change("run.updated", "p", subject, "running")], now - timedelta(hours=hours)
            )
    async with services.db.transaction() as conn:
        relay = await conn.scalar(sa.text("SELECT count(*) FROM notification_relay"))
        if relay:
            # The relay has read only the first row: the second must stay.
            first = (await _rows(services))[0]["identifier"]
            await conn.execute(sa.text("UPDATE notification_relay SET position = :p"), {"p": first})
        deleted = await change_log.prune(conn, now)
    kept = [r["subject"] for r in await _rows(services)]
    if relay:
        assert deleted == 1 and kept == ["older than kept", "recent"]
    else:
        assert deleted == 2 and kept == ["recent"]
