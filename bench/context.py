"""What every workload gets: the size to run at, a scratch directory, the W0 floor, and
clusters (tests/support) on databases copied from templates bootstrapped once per run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster, open_cluster
from tests.support.databases import ClusterDatabases, with_database

# A workload's requests can be slow at its full size (a page deep in a million runs).
API_TIMEOUT = 120.0


def postgres_server() -> str | None:
    """The PostgreSQL server of ORCHESTRA_BENCH_POSTGRES (its `postgres` database), if set;
    otherwise the tests' (tests/support/databases.py)."""
    server = os.environ.get("ORCHESTRA_BENCH_POSTGRES")
    return with_database(server, "postgres") if server else None


@dataclass
class Context:
    smoke: bool
    scratch: Path  # a directory of this run, removed at the end
    # W0's figures, the baselines of the other workloads: spawn_median_ms, spawns_per_second,
    # ws_round_trip_ms.
    floor: dict[str, float] = field(default_factory=dict)
    # Raw series the plots are drawn from, by workload.
    series: dict[str, Any] = field(default_factory=dict)
    databases: ClusterDatabases = field(init=False)

    def __post_init__(self) -> None:
        templates = self.scratch / f"templates-{os.getpid()}"  # scratch may be shared
        self.databases = ClusterDatabases(templates, "bench", postgres_server())

    def size(self, full: Any, smoke: Any) -> Any:
        return smoke if self.smoke else full

    def cluster(
        self, name: str, engine: str = "sqlite", settings: Mapping[str, str] | None = None
    ) -> AbstractContextManager[Cluster]:
        """A cluster under SCRATCH/NAME on a fresh database of `engine` (`settings`: ORCHESTRA_*
        variables for every process); nothing runs until it starts them."""
        return open_cluster(
            self.databases, self.scratch / name, engine, settings, api_timeout=API_TIMEOUT
        )

    def close(self) -> None:
        """Drop the template databases."""
        self.databases.close()
