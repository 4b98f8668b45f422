"""The LISTEN/NOTIFY bridge between processes, on a real PostgreSQL: a topic published in one
process reaches the others, and does not come back to wake the process that published it."""

from __future__ import annotations

import asyncio

from orchestra.services.events import Events
from orchestra.services.notify import PostgresBridge
from tests.support.databases import postgres_url


async def test_topics_reach_other_processes_and_do_not_echo_back() -> None:
    here, there = Events(), Events()
    bridges = [PostgresBridge(postgres_url(), here), PostgresBridge(postgres_url(), there)]
    for bridge in bridges:
        await bridge.start()
    try:
        for bridge in bridges:
            await asyncio.wait_for(bridge.listening.wait(), 10)
        here.publish("dispatch")
        assert await here.wait("dispatch", 0)  # local waiters are woken at once
        assert await there.wait("dispatch", 10)  # the other process, through PostgreSQL
        # Our own notification came back to our listener by now (the other one got it):
        # it must not wake us a second time.
        there.publish("control")
        assert await here.wait("control", 10)
        assert not await here.wait("dispatch", 0.5)
    finally:
        for bridge in bridges:
            await bridge.stop()
