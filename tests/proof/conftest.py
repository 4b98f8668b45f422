"""Fixtures of the proof suite (faults, bad input, load, attacks): a fresh database per test and
a ProofCluster of real processes on it (the fixtures of tests/support/fixtures.py, with this
suite's engine and Cluster class), a ledger whose invariants are checked after every scenario,
and the figures the scenarios measure.

Profiles: the smoke profile runs in `make test`; ORCHESTRA_SOAK=1 (`make soak`) runs the full
lengths and the soak-only scenarios.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proof.cluster import ProofCluster
from tests.proof.invariants import Ledger
from tests.support.cluster import Cluster

SOAK = os.environ.get("ORCHESTRA_SOAK", "") == "1"
PROFILE = "soak" if SOAK else "smoke"
OUT = Path(__file__).parent / "out"


def choose(smoke: Any, soak: Any) -> Any:
    """The smoke or the soak value of a scenario parameter."""
    return soak if SOAK else smoke


soak_only = pytest.mark.skipif(not SOAK, reason="soak profile only (make soak, ORCHESTRA_SOAK=1)")
# A measurement that is only meaningful with the machine to itself: `make soak` runs these after
# the rest, without xdist.
alone = pytest.mark.alone


@pytest.fixture(params=["sqlite"])
def engine(request: pytest.FixtureRequest) -> str:
    """SQLite unless a test says otherwise (`parametrize("engine", [...], indirect=True)`)."""
    return str(request.param)


@pytest.fixture
def cluster_class() -> type[Cluster]:
    return ProofCluster


@pytest.fixture
def ledger(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """What a scenario triggered and what its jobs wrote; a scenario that passes must have
    checked the invariants (`ledger.verify(...)`), or the test errors."""
    built = Ledger(tmp_path / "journal")
    yield built
    passed = getattr(request.node, "proof_outcome", None) == "passed"
    if passed and built.triggered and not built.verified:
        raise AssertionError("the scenario triggered runs but never checked the invariants")


@pytest.fixture
def figure(
    record_property: Callable[[str, object], None], request: pytest.FixtureRequest
) -> Callable[..., None]:
    """Record a measured figure: shown at the end of the session and appended to
    tests/proof/out/figures-<profile>.jsonl (the source of docs/reliability.md)."""

    def record(name: str, value: object, unit: str = "") -> None:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        record_property(f"figure:{name}", f"{shown} {unit}".strip())
        print(f"FIGURE {request.node.name}: {name} = {shown} {unit}")
        OUT.mkdir(exist_ok=True)
        line = json.dumps(
            {
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "profile": PROFILE,
                "test": request.node.nodeid,
                "name": name,
                "value": value,
                "unit": unit,
            }
        )
        with open(OUT / f"figures-{PROFILE}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = []
    for key in ("passed", "failed", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(key, []):
            if getattr(report, "when", "") != "call":
                continue
            for name, value in getattr(report, "user_properties", []):
                if str(name).startswith("figure:"):
                    rows.append(f"{report.nodeid.split('::')[-1]}: {name[7:]} = {value}")
    if rows:
        terminalreporter.section(f"Orchestra proof figures ({PROFILE})")
        for row in rows:
            terminalreporter.write_line(row)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep the outcome of the test's call, for the ledger fixture."""
    report = yield
    if report.when == "call":
        item.proof_outcome = report.outcome  # type: ignore[attr-defined]
    return report
