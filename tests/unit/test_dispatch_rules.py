"""Dispatch's rules (domain/dispatch.py): which worker takes a run, the order of the plain
one-statement pass (derived from the same matching), and the order of pending runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestra.domain.dispatch import Candidate, Caps, Level, assign, plain_order, rank
from orchestra.domain.matching import required_properties, worker_matches


def test_the_freest_worker_first_and_the_earlier_of_equals() -> None:
    free = {"a": 1, "b": 3, "c": 3}
    assert plain_order(free, 100) == ["b", "c", "b", "c", "a", "b", "c"]
    assert free == {"a": 1, "b": 3, "c": 3}  # not consumed


def reference_assign(
    candidates: list[Candidate], free: dict[str, int], can_take: Any
) -> dict[str, str]:
    """The rule as plainly as it can be written: each run to the worker with the most free
    executors among those that can take it (any worker, for a run requiring nothing), the
    earlier of equals."""
    assignments = {}
    for candidate in candidates:
        able = [
            w
            for w, n in free.items()
            if n > 0 and (not candidate.properties or can_take(w, candidate.properties))
        ]
        if able:
            chosen = max(able, key=lambda w: free[w])  # the first of the largest
            assignments[candidate.identifier] = chosen
            free[chosen] -= 1
    return assignments


def test_assign_follows_the_rule_for_many_shapes_of_runs_and_workers() -> None:
    generator = random.Random(7)
    for _ in range(300):
        workers = {f"w{n}": generator.randint(0, 4) for n in range(generator.randint(1, 30))}
        kinds = {w: generator.choice(["linux", "mac"]) for w in workers}
        runs = [
            Candidate(str(n), generator.choice([{}, {}, {"os": "linux"}, {"os": "mac"}]))
            for n in range(generator.randint(0, 60))
        ]

        def can_take(
            worker: str, properties: dict[str, Any], kinds: dict[str, str] = kinds
        ) -> bool:
            return properties.get("os") == kinds[worker]

        free, expected_free = dict(workers), dict(workers)
        expected = reference_assign(runs, expected_free, can_take)
        assert assign(runs, free, can_take) == expected
        assert free == expected_free
        plain = [Candidate(str(n), {}) for n in range(sum(workers.values()))]
        order = list(reference_assign(plain, dict(workers), can_take).values())
        assert plain_order(workers, 1000) == order
        assert plain_order(workers, 3) == order[:3]


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
