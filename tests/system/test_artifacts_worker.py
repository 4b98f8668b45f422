"""Artifacts with a real server and real workers (CONTRACT section 7), the worker's side: files
a step leaves are collected by the job's globs and stored byte for byte; `when` against the
run's outcome; links and globs leading out refused; a glob matching nothing is a line; JUnit
counts on the run; a file over the limit fails the run with the server's reason; a worker killed
-9 in the middle of an upload, started again, finishes it before the run ends; a pipeline node
finds its need's files in its workspace; sandboxed and as another OS user. On both engines,
and on the S3-compatible server (moto) too."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.support.accounts import WORKER_USER
from tests.support.api import Api
from tests.support.cluster import Cluster
from tests.support.jobs import py
from tests.support.processes import orchestra_argv
from tests.support.s3 import CREDENTIALS, S3Server, s3_server  # noqa: F401
from tests.support.waiting import wait_until

MiB = 1 << 20
BWRAP = shutil.which("bwrap")
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run steps as nobody")

# Writes files into the workspace: argv = [path:size[:seed], ...]; random-looking bytes of
# every value (a seed makes them differ), an empty file for size 0.
WRITE_FILES = textwrap.dedent(
    """
    import hashlib, os, sys
    for spec in sys.argv[1:]:
        path, size, *seed = spec.split(":")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        block = hashlib.sha256((seed[0] if seed else path).encode()).digest() * 2048
        block = bytes(range(256)) + block
        with open(path, "wb") as handle:
            left = int(size)
            while left > 0:
                handle.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    print("wrote", len(sys.argv) - 1, "files")
    """
)


def write_files(*specs: str, python: str | None = None) -> list[str]:
    command = py(WRITE_FILES, *specs)
    command[0] = python or os.path.realpath(command[0])  # a sandboxed step has a private /tmp
    return command


# An interpreter `nobody` may run (this one may be under /root).
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"


def expected(size: int, seed: str) -> bytes:
    block = bytes(range(256)) + hashlib.sha256(seed.encode()).digest() * 2048
    data = bytearray()
    while len(data) < size:
        data += block[: min(size - len(data), len(block))]
    return bytes(data)


def download(api: Api, run: dict[str, Any], path: str, project: str = "p") -> bytes:
    url = f"/projects/{project}/runs/{run['identifier']}/artifacts/{path}"
    return api.request("GET", url, 200).content


def shown_files(run: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {a["path"]: (a["size"], a["sha256"]) for a in run["artifacts"]}


def check_round_trip(api: Api, run: dict[str, Any], files: dict[str, bytes]) -> None:
    assert shown_files(run) == {
        path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()
    }
    for path, data in files.items():
        assert download(api, run, path) == data, path


def test_files_round_trip_byte_for_byte_and_the_log_says_what_happened(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.api.put_job(
        "build",
        [write_files("out/big.bin:20000000:a", "out/deep/small.bin:1000:b", "out/empty.bin:0")],
        artifacts=[{"path": "out/**"}, {"path": "missing/*.log", "when": "always"}],
    )
    run = cluster.api.wait_for_status(cluster.api.trigger("build"), "succeeded", timeout=120)
    check_round_trip(
        cluster.api,
        run,
        {
            "out/big.bin": expected(20000000, "a"),
            "out/deep/small.bin": expected(1000, "b"),
            "out/empty.bin": b"",
        },
    )
    log = cluster.api.log(run).decode()
    assert "[orchestra] artifacts: 'missing/*.log' matches no file" in log
    assert "[orchestra] artifacts: 3 files stored (19.1 MiB)" in log


def test_when_follows_the_runs_outcome(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    rules = [
        {"path": "success.txt", "when": "success"},
        {"path": "failure.txt", "when": "failure"},
        {"path": "always.txt", "when": "always"},
    ]
    files = write_files("success.txt:10", "failure.txt:20", "always.txt:30")
    cluster.api.put_job("fails", [files, py("raise SystemExit(3)")], artifacts=rules)
    cluster.api.put_job("works", [files], artifacts=rules)
    failed = cluster.api.wait_for_status(cluster.api.trigger("fails"), "failed", timeout=60)
    assert sorted(shown_files(failed)) == ["always.txt", "failure.txt"]
    assert failed["reason"] is None
    worked = cluster.api.wait_for_status(cluster.api.trigger("works"), "succeeded", timeout=60)
    assert sorted(shown_files(worked)) == ["always.txt", "success.txt"]


def test_links_and_globs_leading_out_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    cluster.start_worker("w1")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the server")
    make_links = py(
        textwrap.dedent(
            """
            import os, sys
            os.makedirs("links", exist_ok=True)
            open("links/real.txt", "w").write("real")
            os.symlink(sys.argv[1], "links/absolute.txt")
            os.symlink("../../../../../../../../.." + sys.argv[1], "links/relative.txt")
            os.symlink("real.txt", "links/inside.txt")
            os.symlink(os.path.dirname(sys.argv[1]), "outside")
            """
        ),
        str(secret),
    )
    cluster.api.put_job(
        "links", [make_links], artifacts=[{"path": "links/*"}, {"path": "outside/*"}]
    )
    run = cluster.api.wait_for_status(cluster.api.trigger("links"), "succeeded", timeout=60)
    check_round_trip(cluster.api, run, {"links/inside.txt": b"real", "links/real.txt": b"real"})
    log = cluster.api.log(run).decode()
    assert "links/absolute.txt refused: it is a symbolic link to" in log
    assert "links/relative.txt refused: it is a symbolic link to" in log
    assert "'outside/*' matches no file" in log
    assert "not for the server" not in log
    # A glob leading out is refused when the job is saved.
    for glob in ("../x", "/etc/passwd", "a/../../b"):
        answer = cluster.api.request(
            "PUT",
            "/projects/p/jobs/bad",
            None,
            json={"steps": [{"name": "s", "command": ["true"]}], "artifacts": [{"path": glob}]},
        )
        assert answer.status_code in (400, 422) and "artifacts[0]" in answer.text, answer.text


def test_junit_reports_put_their_counts_on_the_run(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    report = """<testsuites><testsuite name="s">
        <testcase classname="t.A" name="ok"/>
        <testcase classname="t.A" name="broken"><failure>boom</failure></testcase>
        <testcase classname="t.B" name="later"><skipped/></testcase>
    </testsuite></testsuites>"""
    step = py(
        "import sys; open('one.xml', 'w').write(sys.argv[1]); "
        "open('two.xml', 'w').write(sys.argv[1]); open('bad.xml', 'w').write('<x><y>')",
        report,
    )
    cluster.api.put_job(
        "tests", [step], artifacts=[{"path": "*.xml", "when": "always", "report": "junit"}]
    )
    run = cluster.api.wait_for_status(cluster.api.trigger("tests"), "succeeded", timeout=60)
    assert run["tests"] == {
        "passed": 2,
        "failed": 2,
        "skipped": 2,
        "failures": ["t.A.broken", "t.A.broken"],
    }
    assert sorted(shown_files(run)) == ["bad.xml", "one.xml", "two.xml"]
    assert "bad.xml is not a JUnit report that can be read" in cluster.api.log(run).decode()


def test_a_file_over_the_limit_fails_the_run_with_the_servers_reason(cluster: Cluster) -> None:
    cluster.start(settings={"ORCHESTRA_ARTIFACT_MAX_FILE_MB": "1"})
    cluster.start_worker("w1")
    cluster.api.put_job(
        "big", [write_files("big.bin:2000000", "small.bin:10")], artifacts=[{"path": "*.bin"}]
    )
    run = cluster.api.wait_for_status(cluster.api.trigger("big"), "failed", timeout=60)
    assert "big.bin refused" in run["reason"] and "limit" in run["reason"], run["reason"]
    assert [s["status"] for s in run["steps"]] == ["succeeded"]
    assert sorted(shown_files(run)) == ["small.bin"]  # the others are kept
    assert run["reason"] in cluster.api.log(run).decode()


def upload_offset(cluster: Cluster, run: str) -> int:
    """The bytes the server holds of the run's upload in progress (0 when none)."""
    url = cluster.database_url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text('SELECT max("offset") FROM artifact_upload WHERE run = :run'), {"run": run}
            ).scalar()
    finally:
        engine.dispose()
    return int(found or 0)


def test_a_worker_killed_in_the_middle_of_an_upload_finishes_it_when_started_again(
    cluster: Cluster,
) -> None:
    cluster.start()
    # Each chunk waits a moment (a hook for tests) so that the upload can be cut in its middle.
    worker = cluster.start_worker("w1", settings={"ORCHESTRA_TEST_UPLOAD_PAUSE": "0.5"})
    size = 60 * MiB + 12345
    cluster.api.put_job(
        "slow", [write_files(f"data.bin:{size}:kill")], artifacts=[{"path": "data.bin"}]
    )
    run = cluster.api.trigger("slow")
    held = wait_until(
        lambda: (offset := upload_offset(cluster, run["identifier"])) > 0 and offset,
        120,
        "the upload to be under way",
    )
    worker.kill()  # -9, in the middle of the upload
    assert held < size
    journal = cluster.worker_dir("w1") / "runs" / run["identifier"] / "artifacts.json"
    state = json.loads(journal.read_text())
    assert state["status"] == "succeeded" and state["stored"] == []
    assert cluster.api.get_run(run)["status"] == "running"  # not final while files are missing

    restarted = cluster.start_worker("w1")
    done = cluster.api.wait_for_status(run, "succeeded", timeout=120)
    check_round_trip(cluster.api, done, {"data.bin": expected(size, "kill")})
    assert "resuming its artifacts' uploads" in restarted.log()


def test_an_upload_cut_by_a_server_restart_resumes_where_the_server_holds(
    cluster: Cluster,
) -> None:
    cluster.start()
    port = urlsplit(cluster.url).port
    assert port is not None and cluster.server is not None
    worker = cluster.start_worker("w1", settings={"ORCHESTRA_TEST_UPLOAD_PAUSE": "0.3"})
    size = 50 * MiB + 7
    cluster.api.put_job(
        "cut", [write_files(f"data.bin:{size}:cut")], artifacts=[{"path": "data.bin"}]
    )
    run = cluster.api.trigger("cut")
    wait_until(lambda: upload_offset(cluster, run["identifier"]) > 0, 120, "the upload")
    cluster.server.kill()  # -9: the worker's connections are cut in the middle of the upload
    cluster.start_server(port=port)
    done = cluster.api.wait_for_status(run, "succeeded", timeout=120)
    check_round_trip(cluster.api, done, {"data.bin": expected(size, "cut")})
    assert "artifacts: data.bin:" in worker.log() and "trying again" in worker.log()


def test_an_abort_during_the_uploads_stops_them(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1", settings={"ORCHESTRA_TEST_UPLOAD_PAUSE": "1"})
    cluster.api.put_job(
        "long", [write_files(f"data.bin:{80 * MiB}:abort")], artifacts=[{"path": "data.bin"}]
    )
    run = cluster.api.trigger("long")
    wait_until(lambda: upload_offset(cluster, run["identifier"]) > 0, 120, "the upload")
    cluster.api.abort(run)
    aborted = cluster.api.wait_for_status(run, "aborted", timeout=60)
    assert aborted["artifacts"] == []
    assert [s["status"] for s in aborted["steps"]] == ["succeeded"]
    assert "artifacts: their upload was stopped" in cluster.api.log(run).decode()


def test_a_pipeline_node_finds_its_needs_files_in_its_workspace(cluster: Cluster) -> None:
    cluster.start()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    api = cluster.api
    api.put_job(
        "build",
        [write_files("dist/lib.bin:3000000:lib", "dist/notes.txt:100:notes")],
        artifacts=[{"path": "dist/**"}],
    )
    api.put_job("docs", [write_files("site/index.html:50:docs")], artifacts=[{"path": "site/*"}])
    check = textwrap.dedent(
        """
        import hashlib, os
        for path in ("dist/lib.bin", "dist/notes.txt", "site/index.html"):
            data = open(path, "rb").read()
            print(path, len(data), hashlib.sha256(data).hexdigest())
        """
    )
    api.put_job("test", [py(check)])
    body = {
        "identifier": "ship",
        "nodes": [
            {"identifier": "build", "job": "build"},
            {"identifier": "docs", "job": "docs"},
            {"identifier": "test", "job": "test", "needs": ["build", "docs"]},
        ],
    }
    api.request("POST", "/projects/p/pipelines", 201, json=body)
    started = api.request("POST", "/projects/p/pipelines/ship/trigger", 201, json={}).json()
    shown = wait_until(
        lambda: (
            (found := api.request("GET", f"/projects/p/pipeline-runs/{started['identifier']}"))
            and found.json()["status"] in ("succeeded", "failed")
            and found.json()
        ),
        120,
        "the pipeline run to end",
    )
    assert shown["status"] == "succeeded", shown
    (test_run,) = [r for r in api.runs() if r["pipeline_node"] == "test"]
    log = api.log(test_run).decode()
    for path, size, seed in (
        ("dist/lib.bin", 3000000, "lib"),
        ("dist/notes.txt", 100, "notes"),
        ("site/index.html", 50, "docs"),
    ):
        assert f"{path} {size} {hashlib.sha256(expected(size, seed)).hexdigest()}" in log


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")
def test_a_sandboxed_steps_files_are_collected(cluster: Cluster) -> None:
    cluster.start()
    # Not under /tmp, which a sandbox makes private.
    data_dir = Path("/var/tmp") / f"orchestra-artifacts-{uuid.uuid4().hex}"
    try:
        _sandboxed_round_trip(cluster, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _sandboxed_round_trip(cluster: Cluster, data_dir: Path) -> None:
    cluster.start_worker("w1", data_dir=data_dir)
    shown = cluster.api.worker("w1") or {}
    if str(shown.get("properties", {}).get("sandbox")).lower() != "true":
        pytest.skip(f"bubblewrap cannot make a sandbox here: {shown.get('properties')}")
    cluster.api.put_job(
        "boxed",
        [write_files("out/a.bin:5000:boxed")],
        artifacts=[{"path": "out/*.bin"}],
        sandbox={"network": False},
    )
    run = cluster.api.wait_for_status(cluster.api.trigger("boxed"), "succeeded", timeout=60)
    check_round_trip(cluster.api, run, {"out/a.bin": expected(5000, "boxed")})


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory under /var/tmp (mode 0755: `nobody` may traverse it, and a sandbox's
    private /tmp does not hide it), removed after."""
    directory = Path("/var/tmp") / f"orchestra-artifacts-{uuid.uuid4().hex}"
    directory.mkdir()
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@AS_ROOT
def test_steps_run_as_another_user_have_their_files_collected_and_their_inputs_given(
    cluster: Cluster, scratch: Path
) -> None:
    cluster.start()
    token = scratch / "w1.token"
    token.write_text(cluster.worker_token + "\n")
    token.chmod(0o600)
    argv = orchestra_argv("worker", "--url", cluster.url, "--user", WORKER_USER)
    argv += ["--token-file", str(token), "--identifier", "w1", "--data-dir", str(scratch / "w")]
    argv += ["--run-as", "nobody"]
    cluster.wait_for_active("w1", cluster.spawn(cluster.unique("worker-w1"), argv))
    cluster.api.put_job(
        "make",
        [write_files("out/a.bin:9000000:nobody", "out/root.bin:5", python=SYSTEM_PYTHON)],
        artifacts=[{"path": "out/*"}],
    )
    check = "import os; st = os.stat('out/a.bin'); print('owner', st.st_uid, os.getuid())"
    cluster.api.put_job("use", [[SYSTEM_PYTHON, "-c", check]])
    body = {
        "identifier": "p2",
        "nodes": [
            {"identifier": "make", "job": "make"},
            {"identifier": "use", "job": "use", "needs": ["make"]},
        ],
    }
    cluster.api.request("POST", "/projects/p/pipelines", 201, json=body)
    cluster.api.request("POST", "/projects/p/pipelines/p2/trigger", 201, json={})
    wait_until(
        lambda: any(
            r["pipeline_node"] == "use" and r["status"] == "succeeded" for r in cluster.api.runs()
        ),
        120,
        "the second node to succeed",
    )
    (made,) = [r for r in cluster.api.runs() if r["pipeline_node"] == "make"]
    check_round_trip(
        cluster.api,
        made,
        {"out/a.bin": expected(9000000, "nobody"), "out/root.bin": expected(5, "out/root.bin")},
    )
    (used,) = [r for r in cluster.api.runs() if r["pipeline_node"] == "use"]
    nobody = pwd.getpwnam("nobody").pw_uid
    assert f"owner {nobody} {nobody}" in cluster.api.log(used).decode()


def test_files_round_trip_through_the_s3_store(
    cluster: Cluster,
    s3_server: S3Server,  # noqa: F811
) -> None:
    bucket = s3_server.new_bucket()
    cluster.start(
        settings={
            "ORCHESTRA_ARTIFACTS_URL": f"s3://{bucket}/runs",
            "ORCHESTRA_S3_ENDPOINT_URL": s3_server.endpoint_url,
            **CREDENTIALS,
        }
    )
    cluster.start_worker("w1")
    cluster.api.put_job(
        "build", [write_files("big.bin:18000000:s3", "empty.bin:0")], artifacts=[{"path": "*.bin"}]
    )
    run = cluster.api.wait_for_status(cluster.api.trigger("build"), "succeeded", timeout=120)
    check_round_trip(cluster.api, run, {"big.bin": expected(18000000, "s3"), "empty.bin": b""})
    assert len(s3_server.keys(bucket)) == 2
