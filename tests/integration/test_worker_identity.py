"""Worker identity and approval on real databases: a worker live on another master is refused
(and let in once that master stopped vouching for it); a new worker recorded unapproved where
approval is required; the dispatch's claims, both SQLite's and PostgreSQL's one-statement pass,
give nothing to an unapproved worker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestra.errors import Conflict, Forbidden
from orchestra.protocol import messages as m
from orchestra.services.container import Services
from orchestra.services.master_side import MasterSide
from orchestra.storage import dispatch as dispatch_storage
from tests.conftest import build_services
from tests.helpers import ManualClock

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HEARTBEAT = 5.0


@pytest.fixture
async def services(database_url: str, tmp_path: Path) -> Services:
    built = build_services(database_url, tmp_path, ManualClock(T0))
    await built.projects.create_project({"identifier": "p"})
    await built.projects.create_job("p", {"identifier": "j", "steps": [{"command": ["true"]}]})
    for user in ("owner", "intruder", "local-worker"):
        await built.users.create_user(user, roles=["worker"])
    yield built  # type: ignore[misc]
    await built.close()


def hello(identifier: str) -> m.Hello:
    return m.Hello(
        protocol=m.PROTOCOL_VERSION,
        identifier=identifier,
        display_name=identifier,
        version="test",
        properties={},
        executors=1,
    )


async def test_a_worker_live_on_another_master_is_refused_until_it_lets_go(
    services: Services,
) -> None:
    first = MasterSide.build(services, "m1").registry
    second = MasterSide.build(services, "m2").registry
    live_for = 3 * HEARTBEAT
    await first.register("owner", hello("w"), reconcile=True, live_for=live_for)

    with pytest.raises(Conflict, match="connected to another master"):
        await second.register("owner", hello("w"), reconcile=True, live_for=live_for)
    with pytest.raises(Forbidden, match="another user"):
        await second.register("intruder", hello("w"), reconcile=True, live_for=live_for)
    shown = await services.workers.get_worker("w")
    assert (shown.owner, shown.is_active) == ("owner", True)

    # m1 vouches every interval while it holds the worker; once it stops (it died), the
    # identifier is free three intervals after the last time.
    services.clock.advance(2 * HEARTBEAT)  # type: ignore[attr-defined]
    await first.vouch(["w"])
    services.clock.advance(2 * HEARTBEAT)  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        await second.register("owner", hello("w"), reconcile=True, live_for=live_for)
    services.clock.advance(HEARTBEAT + 1)  # type: ignore[attr-defined]
    await second.register("owner", hello("w"), reconcile=True, live_for=live_for)
    # Gone from m1 cleanly: at once.
    await second.disconnected("w")
    await first.register("owner", hello("w"), reconcile=True, live_for=live_for)


async def test_a_new_worker_is_recorded_unapproved_where_approval_is_required(
    services: Services,
) -> None:
    registry = MasterSide.build(services, "m1").registry
    takes_runs, _ = await registry.register("owner", hello("new"), require_approval=True)
    assert takes_runs is False
    assert (await services.workers.get_worker("new")).is_approved is False
    local, _ = await registry.register("local-worker", hello("local-1"), require_approval=True)
    assert local is True
    # Approved once, it stays approved across reconnections.
    await services.workers.update_worker("new", {"is_approved": True})
    await registry.disconnected("new")
    again, _ = await registry.register("owner", hello("new"), require_approval=True)
    assert again is True
    # Known before approval was required: not held back.
    await registry.register("owner", hello("old"))
    await registry.disconnected("old")
    assert (await registry.register("owner", hello("old"), require_approval=True))[0] is True


async def test_the_dispatch_claims_nothing_for_an_unapproved_worker(
    services: Services, engine_name: str
) -> None:
    side = MasterSide.build(services, "m1")
    await side.registry.register("owner", hello("u"), require_approval=True)
    run = await services.runs.trigger("p", "j", {}, {"type": "api"})

    assert await side.dispatching.claim({run.identifier: "u"}) == []
    if engine_name == "postgresql":
        async with services.db.autocommit() as conn:
            plain = await dispatch_storage.claim_plain(conn, ["u"], "m1", services.clock.now())
        assert plain.won == []
    assert (await services.runs.get_run("p", run.identifier)).status.value == "pending"

    await services.workers.update_worker("u", {"is_approved": True})
    claimed = await side.dispatching.claim({run.identifier: "u"})
    assert [r.identifier for r in claimed] == [run.identifier]
