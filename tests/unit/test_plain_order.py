"""The order in which a one-statement dispatch pass hands runs to workers: the master's own
matching (the freest worker first, the earlier of equals) for runs every worker can take."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from orchestra.master.hub import Master, _plain_order
from orchestra.services.execution import Candidate


def matched_order(free: dict[str, int]) -> list[str]:
    """What Master._match gives runs that every worker can take."""
    master: Any = SimpleNamespace(
        sessions={worker: SimpleNamespace(matches=lambda _: True) for worker in free}
    )
    runs = [Candidate(str(n), {}) for n in range(sum(free.values()))]
    return list(Master._match(master, runs, dict(free)).values())


def test_the_freest_worker_first_and_the_earlier_of_equals() -> None:
    free = {"a": 1, "b": 3, "c": 3}
    assert _plain_order(free, 100) == ["b", "c", "b", "c", "a", "b", "c"]
    assert _plain_order(free, 100) == matched_order(free)


def test_as_the_master_matches_for_many_shapes_and_never_past_the_limit() -> None:
    shapes = [{"w": 1}, {"x": 2, "y": 1}, {f"w{n}": n % 4 + 1 for n in range(40)}]
    for free in shapes:
        assert _plain_order(free, 1000) == matched_order(free)
        assert _plain_order(free, 3) == matched_order(free)[:3]
