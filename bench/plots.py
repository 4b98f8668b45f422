"""PNG plots of W1's latency distribution and W2's throughput (matplotlib, the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def latency(series: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    completion = sorted(series["completion_ms"])
    start = sorted(series["start_ms"])
    spawn = series.get("spawn_ms")
    figure, (histogram, cdf) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = max(completion + start)
    bins = [top * i / 60 for i in range(61)]
    histogram.hist(start, bins=bins, alpha=0.6, label="trigger to start")
    histogram.hist(completion, bins=bins, alpha=0.6, label="trigger to completion")
    histogram.set_xlabel("ms")
    histogram.set_ylabel("runs")
    histogram.set_title(f"W1: {len(completion)} sequential trivial runs, one worker")
    for values, style, label in ((start, ":", "start"), (completion, "-", "completion")):
        cdf.plot(values, [(i + 1) / len(values) for i in range(len(values))], style, label=label)
    if spawn:
        for axis in (histogram, cdf):
            axis.axvline(20 * spawn, color="red", linestyle="--", linewidth=1)
        cdf.text(20 * spawn, 0.05, f" target: 20x spawn = {20 * spawn:.0f} ms", color="red")
    cdf.set_xlabel("ms")
    cdf.set_ylabel("fraction of runs")
    cdf.set_title("cumulative distribution")
    cdf.grid(alpha=0.3)
    histogram.legend()
    cdf.legend(loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def throughput(series: dict[str, Any], path: Path, target: float = 250.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    end = 0.0
    for number, (engine, data) in enumerate(series.items()):
        completed = data["completion_offsets"]
        created = data["creation_offsets"]
        end = max(end, completed[-1])
        color = f"C{number}"
        axis.plot(completed, range(1, len(completed) + 1), color=color, label=f"{engine}: ended")
        axis.plot(
            created, range(1, len(created) + 1), ":", color=color, label=f"{engine}: triggered"
        )
    total = max(len(d["completion_offsets"]) for d in series.values())
    axis.plot(
        [0, total / target],
        [0, total],
        "--",
        color="red",
        linewidth=1,
        label=f"target: {target:.0f} runs/s",
    )
    axis.set_xlim(0, end * 1.02)
    axis.set_xlabel("seconds since the first run was created (creation_date, completion_date)")
    axis.set_ylabel("runs")
    axis.set_title(f"W2: {total} trivial runs triggered at once, 4 workers x 2 executors")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
