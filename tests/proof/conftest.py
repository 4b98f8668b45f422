"""Fixtures of the proof suite (faults, bad input, load, attacks): a fresh database per test, a
ProofCluster of real processes on it, a ledger whose invariants are checked after every
scenario, and the figures the scenarios measure.

The database fixtures follow tests/system/conftest.py (and reuse its helpers), with templates of
their own: a session-scoped fixture imported from there would be a second definition of the same
template database name whenever both directories run in one xdist worker.

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
from psycopg import sql

from tests.proof.cluster import ProofCluster
from tests.proof.invariants import Ledger
from tests.system.conftest import (
    POSTGRES_SERVER,
    SESSION,
    Template,
    _admin_connection,
    _drop,
    _drop_leftovers,
    _numbers,
    database_from,
)
from tests.system.harness import Credentials, bootstrap

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


@pytest.fixture(scope="session")
def proof_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    directory = tmp_path_factory.mktemp("proof-sqlite-template")
    path = directory / "template.sqlite"
    return Template(str(path), bootstrap(f"sqlite:///{path}", directory))


@pytest.fixture(scope="session")
def proof_postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    name = f"{SESSION}prooftpl"
    with _admin_connection() as conn:
        _drop_leftovers(conn)
        _drop(conn, name)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    directory = tmp_path_factory.mktemp("proof-postgres-template")
    yield Template(name, bootstrap(POSTGRES_SERVER + name, directory))
    with _admin_connection() as conn:
        _drop(conn, name)


@pytest.fixture(params=["sqlite"])
def engine(request: pytest.FixtureRequest) -> str:
    """SQLite unless a test says otherwise (`parametrize("engine", [...], indirect=True)`)."""
    return str(request.param)


@pytest.fixture
def system_database(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Credentials]]:
    """A fresh database for one test, copied from a bootstrapped template."""
    template: Template = request.getfixturevalue(
        "proof_sqlite_template" if engine == "sqlite" else "proof_postgres_template"
    )
    with database_from(template, engine, tmp_path, f"{SESSION}p{next(_numbers)}") as url:
        yield url, template.credentials


@pytest.fixture
def cluster(system_database: tuple[str, Credentials], tmp_path: Path) -> Iterator[ProofCluster]:
    """The processes of this test; nothing is started yet."""
    url, credentials = system_database
    built = ProofCluster(tmp_path, url, credentials)
    try:
        yield built
    finally:
        built.close()


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
    """Attach the tails of the process logs to the report of a failed (or xfailed) test."""
    report = yield
    if report.when == "call":
        item.proof_outcome = report.outcome  # type: ignore[attr-defined]
    if report.failed or hasattr(report, "wasxfail"):
        built = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(built, ProofCluster):
            report.sections.append(("orchestra processes", built.log_tails()))
    return report
