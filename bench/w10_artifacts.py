"""W10, artifacts: a 1 GiB file from a step's workspace to the server's store, and from the store
to a client, against a bare copy of the same file measured in the same run (docs/artifacts.md).

One server and one worker on SQLite, the default file store. The step hard-links a prepared
1 GiB file into its workspace (no time of its own), and the job keeps it as an artifact: the
upload's time is from the step's end to the run's end (both on the worker's clock), the worker
hashing the file, then sending it in 8 MiB chunks each hashed, the server checking each chunk,
following the whole file's hash and writing it to its store. The download is a client streaming
`GET .../artifacts/big.bin` to a file. The baseline is `shutil.copyfile` of the same file on the
same disk, warm in the page cache as the others are, made just before each transfer (the disk's
speed varies much on a shared machine: the medians are compared). The targets: each at least
0.3x the bare copy's speed, and the server's and the worker's memory (their processes' RSS,
sampled every 50 ms) growing by less than 64 MiB.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import httpx
from tests.support.procfs import rss_bytes

from bench.context import Context
from bench.measure import MemorySampler
from bench.report import Figure, Workload, percentile, ratio, summary

MiB = 1 << 20
TARGET_RATIO = 0.3
TARGET_GROWTH = 64 * MiB


def _make_file(path: Path, size: int) -> str:
    """A file of `size` bytes that does not compress; its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(8 * MiB)
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def _bare_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(source, target)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _download(url: str, token: str, target: Path) -> tuple[float, str]:
    digest = hashlib.sha256()
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(timeout=300) as client,
        client.stream("GET", url, headers=headers) as response,
        open(target, "wb") as handle,
    ):
        response.raise_for_status()
        for data in response.iter_bytes(MiB):
            handle.write(data)
            digest.update(data)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds, digest.hexdigest()


def run(ctx: Context) -> Workload:
    size = ctx.size(1024 * MiB, 32 * MiB)
    rounds = ctx.size(5, 1)
    result = Workload("W10", "artifacts: 1 GiB from a step's file to stored, and to a client")
    result.size = {"bytes": size, "rounds": rounds, "workers": 1, "engine": "sqlite"}
    source = ctx.scratch / "w10-big.bin"
    sha256 = _make_file(source, size)
    bare: list[float] = []
    uploads: list[float] = []
    downloads: list[float] = []
    growth = {"server upload": 0, "worker upload": 0, "server download": 0}
    try:
        with ctx.cluster("w10", "sqlite") as cluster:
            server = cluster.start_server()
            worker = cluster.start_worker("w1")
            api = cluster.api
            api.put_project("p")
            step = ["ln", "-f", str(source), "big.bin"]
            api.put_job("keep", [step], artifacts=[{"path": "big.bin"}])
            for _ in range(rounds):
                bare.append(_bare_copy(source, ctx.scratch / "w10-copy.bin"))
                before = {"server": rss_bytes(server.pid), "worker": rss_bytes(worker.pid)}
                with MemorySampler({"server": server.pid, "worker": worker.pid}, 0.05) as memory:
                    done = api.wait_for_status(api.trigger("keep"), "succeeded", timeout=600)
                growth["server upload"] = max(
                    growth["server upload"], memory.peak("server") - before["server"]
                )
                growth["worker upload"] = max(
                    growth["worker upload"], memory.peak("worker") - before["worker"]
                )
                (stored,) = done["artifacts"]
                if stored["sha256"] != sha256 or stored["size"] != size:
                    raise RuntimeError(f"the stored file differs: {stored}")
                uploads.append(
                    _seconds(done["steps"][-1]["completion_date"], done["completion_date"])
                )
                url = f"{cluster.url}/api/v1/projects/p/runs/{done['identifier']}/artifacts/big.bin"
                bare.append(_bare_copy(source, ctx.scratch / "w10-copy.bin"))
                before_download = rss_bytes(server.pid)
                with MemorySampler({"server": server.pid}, 0.05) as memory:
                    seconds, got = _download(url, cluster.admin_token, ctx.scratch / "w10-got.bin")
                if got != sha256:
                    raise RuntimeError("the downloaded file differs")
                downloads.append(seconds)
                growth["server download"] = max(
                    growth["server download"], memory.peak("server") - before_download
                )
    finally:
        source.unlink(missing_ok=True)
    bare_median = percentile(bare, 50)
    for key, label, values in (
        ("upload", "a step's 1 GiB file to stored", uploads),
        ("download", "1 GiB stored to a client", downloads),
    ):
        median = percentile(values, 50)
        figure = result.add(
            Figure(
                f"{key}_mib_per_s",
                f"{label}, median of {rounds}",
                size / MiB / median,
                "MiB/s",
                ratio=ratio(bare_median, median),
                baseline=f"a bare copy of the file, median ({size / MiB / bare_median:.0f} MiB/s)",
                target=f"ratio >= {TARGET_RATIO:g}",
            )
        )
        figure.met = (figure.ratio or 0) >= TARGET_RATIO
    for name, grown in growth.items():
        figure = result.add(
            Figure(
                f"{name.replace(' ', '_')}_rss_growth_mib",
                f"the {name.split()[0]}'s RSS growth during the {name.split()[1]}",
                grown / MiB,
                "MiB",
                target=f"< {TARGET_GROWTH // MiB} MiB",
            )
        )
        figure.met = grown < TARGET_GROWTH
    result.details = {
        "bare_copy_s": summary(bare),
        "upload_s": summary(uploads),
        "download_s": summary(downloads),
        "rss_growth_bytes": growth,
    }
    return result
