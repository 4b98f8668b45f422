"""`make bench` at a tiny size, so that the benchmarks cannot rot. No figure is asserted:
benchmarks are not tests; this only checks that every workload still runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ["W0", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]


def run_script(tmp_path: Path, script: str, *options: str) -> str:
    """Run bench/<script> with a scratch directory under tmp_path; its output."""
    argv = [sys.executable, str(ROOT / "bench" / script), *options]
    done = subprocess.run(
        [*argv, "--scratch", str(tmp_path / "scratch")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    return done.stdout


def test_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "smoke.json"
    run_script(tmp_path, "run.py", "--smoke", "--output", str(output))
    document = json.loads(output.read_text())
    assert document["smoke"] is True
    assert document["machine"]["cpu_count"] >= 1
    assert document["machine"]["python"]
    for name in WORKLOADS:
        workload = document["workloads"][name]
        assert workload["error"] is None, f"{name}: {workload['error']}"
        if name == "W8" and workload["details"].get("skipped"):
            continue  # no bubblewrap here: nothing to measure (its reason is in the document)
        values = [f["value"] for f in workload["figures"]]
        assert values, f"{name} reported no figure"
        assert all(isinstance(v, int | float) for v in values), f"{name}: {values}"


def test_w2_profile_smoke(tmp_path: Path) -> None:
    """bench/w2_profile.py (where W2's time goes) at a tiny size, on both engines."""
    out = run_script(tmp_path, "w2_profile.py", "--runs", "16")
    for engine in ("sqlite", "postgresql"):
        assert f"{engine}: " in out and "runs/s" in out
    assert out.count("CPU per run, ms: ") == 2
    assert out.count("assignment to step start, ms: ") == 2
    assert "PostgreSQL per run: commits" in out
