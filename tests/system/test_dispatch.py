"""Assignment with real processes: properties, disabled workers, jobs and projects, several
workers with several executors, and the expiry of pending runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster
from tests.support.jobs import WAIT_FOR_FILE, py
from tests.support.waiting import holds_for

# How long a run must be seen to stay pending: two rounds of the dispatcher (one a second at least)
# and heartbeats (one a second in these tests).
PENDING_WINDOW = 2.0


def still_pending(cluster: Cluster, run: dict[str, Any]) -> bool:
    current = cluster.api.get_run(run)
    return current["status"] == "pending" and current["worker"] is None


def assert_waits(cluster: Cluster, run: dict[str, Any], what: str) -> None:
    """The run stays pending for the whole window."""
    holds_for(lambda: still_pending(cluster, run), PENDING_WINDOW, f"{what}: pending")


def test_dispatch_waits_for_worker_with_matching_properties(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("linux-box", {"os": "linux"})
    cluster.api.put_job("j", [py("print('on plan9')")], properties={"os": "plan9"})

    run = cluster.api.trigger("j")
    assert_waits(cluster, run, "a run no connected worker matches")

    cluster.start_worker("plan9-box", {"os": "plan9", "arch": "mips"})
    done = cluster.api.wait_for_status(run, "succeeded")
    assert done["worker"] == "plan9-box"
    assert cluster.api.log(run) == b"on plan9\n"


def test_dispatch_list_property_matches_any_of_its_values(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("c-box", {"os": "c"})
    cluster.api.put_job("j", [py("print('ok')")], properties={"os": ["a", "b"]})

    run = cluster.api.trigger("j")
    assert_waits(cluster, run, "a run whose list holds no connected worker's value")

    cluster.start_worker("b-box", {"os": "b"})
    assert cluster.api.wait_for_status(run, "succeeded")["worker"] == "b-box"


def test_dispatch_gives_disabled_worker_nothing(cluster: Cluster) -> None:
    cluster.start()
    off = cluster.start_worker("off", {"pool": "a"}, wait=False)
    on = cluster.start_worker("on", {"pool": "b"}, wait=False)
    cluster.wait_for_active("off", off)
    cluster.wait_for_active("on", on)
    # Disabled while it is away, the worker comes back disabled. (Disabling a connected worker
    # has a race of its own: see the next test.)
    off.stop()
    cluster.api.wait_for_worker("off", is_active=False)
    assert cluster.api.patch_worker("off", is_enabled=False)["is_enabled"] is False
    cluster.start_worker("off", {"pool": "a"})
    cluster.api.put_job("ja", [py("print('a')")], properties={"pool": "a"})
    cluster.api.put_job("jb", [py("print('b')")], properties={"pool": "b"})

    held = cluster.api.trigger("ja")
    other = cluster.api.trigger("jb")
    # The dispatcher is at work (the enabled worker gets its run) while the other run waits.
    assert cluster.api.wait_for_status(other, "succeeded")["worker"] == "on"
    assert_waits(cluster, held, "a run only a disabled worker matches")

    cluster.api.patch_worker("off", is_enabled=True)
    assert cluster.api.wait_for_status(held, "succeeded")["worker"] == "off"


def test_dispatch_gives_worker_disabled_while_connected_nothing(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job("j", [py("print('ran')")])
    assert cluster.api.patch_worker("w1", is_enabled=False)["is_enabled"] is False

    run = cluster.api.trigger("j")
    assert_waits(cluster, run, "a run only a just-disabled worker could take")

    cluster.api.patch_worker("w1", is_enabled=True)
    assert cluster.api.wait_for_status(run, "succeeded")["worker"] == "w1"


def test_dispatch_holds_runs_of_disabled_job(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job("j", [py("print('ran')")])
    assert cluster.api.patch_job("j", is_enabled=False)["is_enabled"] is False

    run = cluster.api.trigger("j")
    assert_waits(cluster, run, "a run of a disabled job")

    cluster.api.patch_job("j", is_enabled=True)
    cluster.api.wait_for_status(run, "succeeded")
    assert cluster.api.log(run) == b"ran\n"


def test_dispatch_holds_runs_of_disabled_project(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job("j", [py("print('ran')")])
    assert cluster.api.patch_project("p", is_enabled=False)["is_enabled"] is False

    run = cluster.api.trigger("j")
    assert_waits(cluster, run, "a run of a disabled project's job")

    cluster.api.patch_project("p", is_enabled=True)
    cluster.api.wait_for_status(run, "succeeded")
    assert cluster.api.log(run) == b"ran\n"


def test_dispatch_runs_four_runs_at_once_on_two_workers(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    workers = {w: cluster.start_worker(w, executors=2, wait=False) for w in ("w1", "w2")}
    for identifier, process in workers.items():
        cluster.wait_for_active(identifier, process)
    markers = tmp_path / "started"
    markers.mkdir()
    # Each run says it started, then waits until all four have: they must run at the same time.
    together = """
        import os, pathlib, sys, time
        markers = pathlib.Path(sys.argv[1])
        (markers / os.environ["ORCHESTRA_RUN"]).touch()
        deadline = time.monotonic() + 60
        while len(list(markers.iterdir())) < 4:
            if time.monotonic() > deadline:
                sys.exit(f"only {len(list(markers.iterdir()))} runs started")
            time.sleep(0.05)
        print("four at once")
    """
    cluster.api.put_job("j", [py(together, str(markers))])

    runs = [cluster.api.trigger("j") for _ in range(4)]
    done = [cluster.api.wait_for_status(run, "succeeded", timeout=90) for run in runs]

    assert Counter(run["worker"] for run in done) == {"w1": 2, "w2": 2}
    assert sorted(p.name for p in markers.iterdir()) == sorted(r["identifier"] for r in runs)


def test_dispatch_cancels_runs_pending_past_expiry(cluster: Cluster) -> None:
    cluster.start(settings={"ORCHESTRA_PENDING_EXPIRY": "2"})
    cluster.api.put_job("j", [py("print('never')")])

    run = cluster.api.trigger("j")
    done = cluster.api.wait_for_status(run, "cancelled", timeout=15)
    assert done["start_date"] is None
    assert [s["status"] for s in done["steps"]] == ["skipped"]


def test_run_pending_says_why_it_waits(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w1", {"os": "linux"})
    go = tmp_path / "go"
    cluster.api.put_job("busy", [py(WAIT_FOR_FILE, str(go))], properties={"os": "linux"})
    cluster.api.put_job("plan9", [py("print('never')")], properties={"os": "plan9"})
    cluster.api.put_job("off", [py("print('never')")], is_enabled=False)
    cluster.api.put_project("q", is_enabled=False)
    cluster.api.put_job("j", [py("print('never')")], project="q")
    running = cluster.api.trigger("busy")
    cluster.api.wait_for_status(running, "running")

    waiting = {
        "matching workers busy": cluster.api.trigger("busy"),
        "no worker has the properties": cluster.api.trigger("plan9"),
        "job disabled": cluster.api.trigger("off"),
    }
    reasons = {what: cluster.api.get_run(run)["waiting_reason"] for what, run in waiting.items()}
    in_q = cluster.api.trigger("j", project="q")
    reasons["project disabled"] = cluster.api.get_run(in_q, project="q")["waiting_reason"]

    assert all(reasons.values()), reasons
    assert len(set(reasons.values())) == len(reasons), reasons
    go.touch()
    cluster.api.wait_for_status(running, "succeeded")
