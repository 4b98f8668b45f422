"""Dispatch's rules (domain/dispatch.py): which worker takes a run, the order of the plain
one-statement pass (derived from the same matching), and the order of pending runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestra.domain.dispatch import Candidate, Caps, Level, assign, plain_order, rank
from orchestra.domain.matching import required_properties, worker_matches


def anyone(_worker: str, _properties: dict[str, Any]) -> bool:
    return True


def test_the_freest_worker_first_and_the_earlier_of_equals() -> None:
    free = {"a": 1, "b": 3, "c": 3}
    assert plain_order(free, 100) == ["b", "c", "b", "c", "a", "b", "c"]
    assert free == {"a": 1, "b": 3, "c": 3}  # not consumed


def test_the_plain_order_is_the_matching_s_for_many_shapes_and_never_past_the_limit() -> None:
    shapes = [{"w": 1}, {"x": 2, "y": 1}, {f"w{n}": n % 4 + 1 for n in range(40)}]
    for free in shapes:
        runs = [Candidate(str(n), {}) for n in range(sum(free.values()))]
        matched = list(assign(runs, dict(free), anyone).values())
        assert plain_order(free, 1000) == matched
        assert plain_order(free, 3) == matched[:3]


def test_a_run_goes_only_to_a_worker_that_can_take_it() -> None:
    free = {"linux": 2, "mac": 5}
    runs = [Candidate("r1", {"os": "linux"}), Candidate("r2", {}), Candidate("r3", {"os": "bsd"})]

    def can_take(worker: str, properties: dict[str, Any]) -> bool:
        return properties.get("os", worker) == worker

    assert assign(runs, free, can_take) == {"r1": "linux", "r2": "mac"}
    assert free == {"linux": 1, "mac": 4}


def row(identifier: str, job: str, minute: int, capped: bool = False) -> dict[str, Any]:
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return {
        "identifier": identifier,
        "job": job,
        "creation_date": created,
        "properties": {},
        "capped": capped,
    }


def test_priority_first_then_projects_take_turns_then_oldest_first() -> None:
    levels = [
        Level("a", 5, [row("a-urgent", "j", 9)]),
        Level("a", 0, [row("a1", "j", 1), row("a2", "j", 2), row("a3", "j", 3)]),
        Level("b", 0, [row("b1", "j", 5), row("b2", "j", 6)]),
    ]
    order = [c.identifier for c in rank(levels, 10, Caps.none())]
    assert order == ["a-urgent", "a1", "b1", "a2", "b2", "a3"]


def test_caps_leave_out_the_runs_over_them_and_the_batch_bounds_each_project() -> None:
    levels = [Level("a", 0, [row(f"a{n}", "capped", n, capped=True) for n in range(5)])]
    caps = Caps({("a", "capped"): 2}, {}, {("a", "capped"): 1}, {"a": 1})
    assert [c.identifier for c in rank(levels, 10, caps)] == ["a0"]
    assert len(rank(levels, 3, Caps.none())) == 3


def test_a_sandboxed_run_requires_the_property_sandbox_true_and_others_of_its_job_do_not() -> None:
    sandboxed = {**row("boxed", "j", 2), "sandbox": {"network": False}}
    levels = [Level("a", 0, [row("open", "j", 1), sandboxed, {**row("later", "j", 3)}])]
    candidates = rank(levels, 10, Caps.none())
    assert [(c.identifier, c.properties) for c in candidates] == [
        ("open", {}),
        ("boxed", {"sandbox": "true"}),
        ("later", {}),
    ]
    workers = {"plain": {"os": "linux"}, "old": {}, "unable": {"sandbox": "unavailable: no bwrap"}}

    def can_take(worker: str, properties: dict[str, Any]) -> bool:
        return worker_matches(properties, workers[worker])

    free = {"plain": 5, "old": 5, "unable": 5}
    assert "boxed" not in assign(candidates, dict(free), can_take)
    workers["boxed"] = {"os": "linux", "sandbox": "true"}
    assert assign(candidates, {**free, "boxed": 1}, can_take)["boxed"] == "boxed"


def test_a_job_cannot_lift_the_sandbox_requirement_with_its_own_property() -> None:
    assert required_properties({"sandbox": "false", "os": "linux"}, {"network": True}) == {
        "sandbox": "true",
        "os": "linux",
    }
    assert required_properties({"os": "linux"}, None) == {"os": "linux"}
