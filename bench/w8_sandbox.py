"""W8, sandboxed steps: W1's trivial runs (one step, `true`, one worker with one executor, on
SQLite), open and in a sandbox (docs/isolation.md), with and without network, one after the
other in turns, so that the load of a shared machine weighs on each alike.

Each run is timed as W1 times it (trigger to the end of the followed log). The baseline is a
bare bubblewrap start measured in the same run, between the runs: the very command the worker
runs for a sandboxed step (its options, its hidden data directory, its workspace) against a
bare spawn of `true`. The target: a sandboxed step costs at most 3 ms more than an open one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bench.context import Context
from bench.report import Figure, Workload, percentile, ratio, summary
from bench.w1_latency import WARM_UP, timed_run
from orchestra.worker.sandbox import prepare

TARGET_EXTRA_MS = 3.0
# The jobs, in the order each turn runs them: (job, its sandbox).
KINDS = {
    "open": None,
    "sandboxed": {"network": True},
    "sandboxed-offline": {"network": False},
}


async def spawn(argv: Sequence[str]) -> float:
    """One process started and waited for, in ms."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv)
    await process.wait()
    return (time.perf_counter() - started) * 1000


def run(ctx: Context) -> Workload:
    count = ctx.size(150, 4)
    result = Workload("W8", "sandboxed steps: W1's runs open and under bubblewrap (SQLite)")
    result.size = {"runs": count * len(KINDS), "workers": 1, "executors": 1, "engine": "sqlite"}
    if not (found := prepare("always")).available:
        # Nothing to measure on this machine (make bench installs bubblewrap where it can).
        result.details = {"skipped": f"no sandbox here: {found.problem}"}
        return result
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    bare: dict[str, list[float]] = {"true": [], "bwrap": [], "bwrap-offline": []}
    with ctx.cluster("w8", "sqlite") as cluster:
        cluster.start_server()
        cluster.start_worker("w1", executors=1)
        worker = cluster.api.worker("w1") or {}
        if worker.get("properties", {}).get("sandbox") != "true":
            raise RuntimeError(f"the worker cannot sandbox: {worker.get('properties')}")
        api = cluster.api
        api.put_project("p")
        for kind, sandbox in KINDS.items():
            api.put_job(kind, [["true"]], sandbox=sandbox)
        # The worker's own command for a sandboxed `true` in its workspace, data dir hidden.
        sandbox = prepare("always", [cluster.worker_dir("w1")])
        workspace = cluster.worker_dir("w1") / "workspaces" / "sandboxed"
        commands = {
            "true": ["true"],
            "bwrap": sandbox.command(["true"], workspace, network=True),
            "bwrap-offline": sandbox.command(["true"], workspace, network=False),
        }
        for _ in range(WARM_UP):
            for kind in KINDS:
                timed_run(api, kind)
        loop = asyncio.new_event_loop()
        try:
            for turn in range(count):
                kinds = list(KINDS)
                kinds = kinds[turn % len(kinds) :] + kinds[: turn % len(kinds)]
                for kind in kinds:
                    samples[kind].append(timed_run(api, kind)["completion_ms"])
                for name, argv in commands.items():
                    bare[name].append(loop.run_until_complete(spawn(argv)))
        finally:
            loop.close()

    open_p50 = percentile(samples["open"], 50)
    bare_p50 = {name: percentile(values, 50) for name, values in bare.items()}
    bwrap_extra = {
        "sandboxed": bare_p50["bwrap"] - bare_p50["true"],
        "sandboxed-offline": bare_p50["bwrap-offline"] - bare_p50["true"],
    }
    result.add(
        Figure(
            "open_completion_p50_ms",
            "open run, trigger to completion, p50",
            open_p50,
            "ms",
            ratio=ratio(open_p50, bare_p50["true"]),
            baseline=f"bare spawn of true ({bare_p50['true']:.2f} ms)",
        )
    )
    for kind in ("sandboxed", "sandboxed-offline"):
        value = percentile(samples[kind], 50)
        extra = value - open_p50
        network = "network" if kind == "sandboxed" else "no network"
        result.add(
            Figure(
                f"{kind}_completion_p50_ms",
                f"sandboxed run ({network}), trigger to completion, p50",
                value,
                "ms",
                ratio=ratio(value, open_p50),
                baseline=f"the open run ({open_p50:.2f} ms)",
            )
        )
        figure = result.add(
            Figure(
                f"{kind}_extra_ms",
                f"a sandboxed step's extra cost ({network}), p50 against p50",
                extra,
                "ms",
                ratio=ratio(extra, bwrap_extra[kind]),
                baseline=f"a bare bwrap start's extra cost ({bwrap_extra[kind]:.2f} ms)",
                target=f"<= {TARGET_EXTRA_MS:g} ms",
            )
        )
        figure.met = extra <= TARGET_EXTRA_MS
    result.details = {
        "completion_ms": {kind: summary(values) for kind, values in samples.items()},
        "bare_start_ms": {name: summary(values) for name, values in bare.items()},
        "bwrap_extra_ms": bwrap_extra,
    }
    ctx.series["W8"] = {"completion_ms": samples, "bare_start_ms": bare}
    return result
