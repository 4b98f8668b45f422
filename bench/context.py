"""What every workload gets: the size to run at, a scratch directory and the W0 floor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    smoke: bool
    scratch: Path  # a directory of this run, removed at the end
    # W0's figures, the baselines of the other workloads: spawn_median_ms, spawns_per_second,
    # ws_round_trip_ms.
    floor: dict[str, float] = field(default_factory=dict)
    # Raw series the plots are drawn from, by workload.
    series: dict[str, Any] = field(default_factory=dict)

    def size(self, full: Any, smoke: Any) -> Any:
        return smoke if self.smoke else full
