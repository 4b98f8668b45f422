"""Run Orchestra's benchmarks: `python bench/run.py [--only W1,W2] [--smoke] [--output PATH]`.

Starts everything each workload needs (servers, workers, PostgreSQL databases of its own) and
stops it after, prints a table and writes the figures, with the machine's facts, to
`bench/results/<YYYY-MM-DD>.json` (and the plots beside it; `<YYYY-MM-DD>-W1-W2.json` for
`--only W1,W2`). W0, the floor the other figures are compared with, always runs. `--smoke`
runs every workload at a tiny size, to check that the benchmarks still work; its figures mean
nothing. docs/performance.md explains the workloads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["W0", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12"]


def workloads() -> dict[str, Callable[..., object]]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import (
        w0_floor,
        w1_latency,
        w2_throughput,
        w3_connections,
        w4_logs,
        w5_api,
        w6_schedules,
        w7_scale_out,
        w8_sandbox,
        w9_pipelines,
        w10_artifacts,
        w11_events,
        w12_webhooks,
    )

    return {
        "W0": w0_floor.run,
        "W1": w1_latency.run,
        "W2": w2_throughput.run,
        "W3": w3_connections.run,
        "W4": w4_logs.run,
        "W5": w5_api.run,
        "W6": w6_schedules.run,
        "W7": w7_scale_out.run,
        "W8": w8_sandbox.run,
        "W9": w9_pipelines.run,
        "W10": w10_artifacts.run,
        "W11": w11_events.run,
        "W12": w12_webhooks.run,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", help="comma-separated workloads, e.g. W1,W2 (W0 always runs)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check, not measure")
    parser.add_argument("--output", type=Path, help="the JSON file to write")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=ROOT / "var" / "bench",
        help="where databases and workers' directories go (default: var/bench, as make run's var/)",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="RESULTS", help="print a results file's table as Markdown"
    )
    options = parser.parse_args(argv)
    selected = ORDER
    if options.only:
        wanted = {name.strip().upper() for name in options.only.split(",") if name.strip()}
        unknown = wanted - set(ORDER)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
        selected = [name for name in ORDER if name in wanted or name == "W0"]
    options.selected = selected
    if options.output is None:
        day = datetime.now().strftime("%Y-%m-%d")
        # A partial or smoke run gets a name of its own: it never replaces the day's full run.
        suffix = "-smoke" if options.smoke else ""
        if options.only:
            suffix += "-" + "-".join(name for name in selected if name != "W0")
        options.output = ROOT / "bench" / "results" / f"{day}{suffix}.json"
    return options


def markdown(path: Path) -> int:
    from bench.report import Workload, markdown_table

    document = json.loads(path.read_text())
    done = [Workload.from_dict(name, data) for name, data in document["workloads"].items()]
    print(markdown_table(done))
    return 0


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like an error, so that every cluster stops what it started."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    runners = workloads()
    if options.markdown:
        return markdown(options.markdown)
    from bench import plots
    from bench.context import Context
    from bench.measure import postgres_version
    from bench.report import Workload, current_commit, format_table, machine_facts

    # Under the project's var/ by default, where `make run` keeps its database and its workers'
    # journals, not in /tmp: on this machine a new file or directory in /tmp costs ~0.5 ms of
    # CPU against ~0.02 ms under the project, on the same disk, and a worker creates a few per
    # run (docs/performance.md, "Where the bench writes").
    options.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=options.scratch))
    ctx = Context(smoke=options.smoke, scratch=scratch)
    machine = machine_facts()
    machine["postgresql"] = postgres_version()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    done: list[Workload] = []
    try:
        for name in options.selected:
            print(f"== {name} ...", flush=True)
            commit = current_commit()
            began = time.perf_counter()
            try:
                result = runners[name](ctx)
                assert isinstance(result, Workload)
            except Exception as exc:
                traceback.print_exc()
                result = Workload(name, name, error=f"{type(exc).__name__}: {exc}")
            result.seconds = time.perf_counter() - began
            result.commit = commit
            done.append(result)
            print(format_table([result]), flush=True)
            print(f"   ({result.seconds:.1f} s)", flush=True)
    finally:
        ctx.close()
        if options.keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    machine["load_average_end"] = machine_facts()["load_average"]
    output: Path = options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    drawn = []
    if plots.available():
        if "W1" in ctx.series:
            drawn.append(plots.latency(ctx.series["W1"], output.with_name(f"{output.stem}-w1.png")))
        if "W2" in ctx.series:
            drawn.append(
                plots.throughput(ctx.series["W2"], output.with_name(f"{output.stem}-w2.png"))
            )
    else:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
    document = {
        "date": started_at.isoformat(),
        "smoke": options.smoke,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "workloads": {w.name: w.as_dict() for w in done},
        "plots": [str(p) for p in drawn],
        "series": _rounded(ctx.series),
    }
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print()
    print(format_table(done))
    print(f"\nwritten: {output}" + "".join(f"\nplot: {p}" for p in drawn))
    failed = [w.name for w in done if w.error]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _rounded(value: object) -> object:
    """Raw series for re-plotting, to the microsecond or the microsecond's share of a ms."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
