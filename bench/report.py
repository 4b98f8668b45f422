"""Figures, statistics, the machine's facts and the printed table."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One measured figure, with its ratio to a baseline measured in the same run and, when the
    issue sets one, its target and whether it is met."""

    key: str
    label: str
    value: float | None
    unit: str
    ratio: float | None = None
    baseline: str | None = None  # what `ratio` divides by, e.g. "W0 spawn median 1.1 ms"
    target: str | None = None
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Workload:
    """What one workload hands back."""

    name: str
    title: str
    size: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    commit: str | None = None  # of the code it ran (the tree can move during a long run)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Workload:
        """A workload read back from a results file."""
        return cls(
            name=name,
            title=data["title"],
            size=data.get("size", {}),
            figures=[Figure(**f) for f in data.get("figures", [])],
            details=data.get("details", {}),
            error=data.get("error"),
            seconds=data.get("seconds", 0.0),
            commit=data.get("commit"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "size": self.size,
            "figures": [f.as_dict() for f in self.figures],
            "details": self.details,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "commit": self.commit,
        }


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, min, max and mean of some values, rounded for the JSON."""
    if not values:
        return {}
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "mean": round(sum(values) / len(values), 3),
    }


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["memory_mib"] = int(line.split()[1]) // 1024
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts["commit"] = current_commit()
    return facts


def current_commit() -> str | None:
    """The checked-out commit, with "+dirty" when src/ has changes not committed."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _number(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def table_rows(workloads: Iterable[Workload]) -> list[list[str]]:
    rows = []
    for workload in workloads:
        if workload.error:
            rows.append([workload.name, f"FAILED: {workload.error[:80]}", "", "", "", ""])
        for figure in workload.figures:
            met = {True: "met", False: "MISSED", None: ""}[figure.met]
            ratio_text = ""
            if figure.ratio is not None:
                ratio_text = f"{_number(figure.ratio)}x {figure.baseline or ''}".strip()
            rows.append(
                [
                    workload.name,
                    figure.label,
                    _number(figure.value, figure.unit),
                    ratio_text,
                    figure.target or "",
                    met,
                ]
            )
    return rows


HEADER = ["", "figure", "value", "ratio to baseline", "target", ""]


def format_table(workloads: Iterable[Workload]) -> str:
    rows = [HEADER, *table_rows(workloads)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(workloads: Iterable[Workload]) -> str:
    rows = table_rows(workloads)
    lines = [
        "| workload | figure | value | ratio to baseline | target | |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)
