"""The CLI over every resource against a real server and worker: `-o json` prints exactly the
API's JSON (a list: every page, one array), runs named by a unique prefix, exit statuses 0, 1
and 2, --version, -h, and `orchestra admin` refusing a database nobody pointed it at."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestra import __version__
from orchestra.storage import runs as run_storage
from tests.conftest import build_services
from tests.support.cluster import Cluster
from tests.support.databases import ENGINES
from tests.support.processes import clean_env, orchestra_argv, run_orchestra
from tests.support.waiting import wait_until

PIPELINE = {"identifier": "both", "nodes": [{"identifier": "one", "job": "quiet"}]}
# Two runs whose identifiers share their first 8 characters (written straight to the database:
# random ones never do).
TWINS = ["abcdef01-1111-4111-8111-111111111111", "abcdef01-2222-4222-8222-222222222222"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def in_parallel(calls: list[Callable[[], Any]]) -> list[Any]:
    """Independent commands at once (each pays the interpreter's start)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: call(), calls))


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("orchestra: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


async def insert_twins(cluster: Cluster) -> None:
    services = build_services(cluster.database_url, cluster.directory / "twins")
    now = datetime.now(UTC)
    try:
        async with services.db.transaction() as conn:
            for identifier in TWINS:
                row = {
                    "identifier": identifier,
                    "project": "p",
                    "job": "quiet",
                    "parameters": {},
                    "source": {"type": "test"},
                    "worker": None,
                    "status": "cancelled",
                    "workspace": "quiet",
                    "should_cancel": False,
                    "should_abort": False,
                    "lease": None,
                    "event_sequence": 0,
                    "log_size": 0,
                    "creation_date": now,
                    "update_date": now,
                }
                await run_storage.insert_run(conn, row, [{"name": "s", "command": ["true"]}])
    finally:
        await services.close()


@pytest.fixture
def populated(cluster: Cluster) -> Cluster:
    """Project p with a job, a pipeline, a schedule, a secret, a worker, a user with a token,
    a finished run and a pipeline run."""
    cluster.start()
    api = cluster.api
    api.put_job("quiet", [["true"]])
    api.request("POST", "/projects/p/pipelines", 201, json=PIPELINE)
    schedule = {"identifier": "yearly", "job": "quiet", "expression": "0 3 1 1 *"}
    api.request("POST", "/projects/p/schedules", 201, json=schedule)
    api.request("PUT", "/projects/p/secrets/TOKEN", (200, 201, 204), json={"value": "v"})
    api.request("POST", "/users", 201, json={"identifier": "reader", "roles": ["viewer"]})
    api.request("POST", "/users/reader/tokens", 201, json={"description": "cli"})
    cluster.start_worker("w1")
    run = api.trigger("quiet")
    api.wait_for_status(run, "succeeded", 60)
    started = api.request("POST", "/projects/p/pipelines/both/trigger", 201, json={}).json()
    path = f"/projects/p/pipeline-runs/{started['identifier']}"
    wait_until(
        lambda: api.request("GET", path, 200).json()["status"] == "succeeded",
        90,
        "the pipeline run to succeed",
    )
    return cluster


def direct_run(cluster: Cluster) -> str:
    """The run triggered through the API (not the pipeline's)."""
    return str(next(r["identifier"] for r in cluster.api.runs("p") if r["source"]["type"] == "api"))


def test_cli_json_is_the_api_json_for_every_resource(populated: Cluster) -> None:
    env = populated.client_env()
    api = populated.api
    populated.workers["w1"].stop()  # its heartbeats would change it between two readings
    api.wait_for_worker("w1", is_active=False)
    run = api.runs("p")[0]["identifier"]
    pipeline_run = next(api.pages("/projects/p/pipeline-runs"))["identifier"]
    # (command, the API's path, a list?)
    cases: list[tuple[list[str], str, bool]] = [
        (["project", "list"], "/projects", True),
        (["project", "show", "p"], "/projects/p", False),
        (["job", "list", "p"], "/projects/p/jobs", True),
        (["job", "show", "p", "quiet"], "/projects/p/jobs/quiet", False),
        (["pipeline", "list", "p"], "/projects/p/pipelines", True),
        (["pipeline", "show", "p", "both"], "/projects/p/pipelines/both", False),
        (["pipeline", "runs", "p"], "/projects/p/pipeline-runs", True),
        (
            ["pipeline", "show-run", "p", pipeline_run],
            f"/projects/p/pipeline-runs/{pipeline_run}",
            False,
        ),
        (["schedule", "list", "p"], "/projects/p/schedules", True),
        (["schedule", "show", "p", "yearly"], "/projects/p/schedules/yearly", False),
        (["run", "list", "p"], "/projects/p/runs", True),
        (["run", "show", "p", run], f"/projects/p/runs/{run}", False),
        (["worker", "list"], "/workers", True),
        (["worker", "show", "w1"], "/workers/w1", False),
        (["user", "list"], "/users", True),
        (["user", "show", "reader"], "/users/reader", False),
        (["token", "list", "--user", "reader"], "/users/reader/tokens", True),
        (["secret", "list", "p"], "/projects/p/secrets", True),
    ]

    def api_json(path: str, many: bool) -> Any:
        return list(api.pages(path)) if many else api.request("GET", path, 200).json()

    def check(case: tuple[list[str], str, bool]) -> None:
        command, path, many = case
        # The CLI's answer equals the API's just before or just after it.
        before = api_json(path, many)
        done = run_orchestra([*command, "-o", "json"], env)
        after = api_json(path, many)
        assert done.returncode == 0, (command, done.stderr)
        printed = json.loads(done.stdout)
        assert printed in (before, after), command
        assert isinstance(printed, list) == many
        if many:
            assert printed, command  # every listing here has something in it

    in_parallel([functools.partial(check, case) for case in cases])


def test_cli_text_output_and_changes(populated: Cluster, tmp_path: Path) -> None:
    env = populated.client_env()
    api = populated.api
    disabled = run_orchestra(["job", "disable", "p", "quiet", "-o", "json"], env)
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout) == api.request("GET", "/projects/p/jobs/quiet", 200).json()
    assert json.loads(disabled.stdout)["is_enabled"] is False
    enabled = run_orchestra(["job", "enable", "p", "quiet"], env)
    assert enabled.stdout.strip() == "job quiet enabled"
    job_file = tmp_path / "job.yaml"
    job_file.write_text("steps:\n  - {name: s, command: ['true']}\ndescription: from a file\n")
    created, project, table = in_parallel(
        [
            lambda: run_orchestra(["job", "create", "p", "filed", "-f", str(job_file)], env),
            lambda: run_orchestra(["project", "create", "q", "--display-name", "Q q"], env),
            lambda: run_orchestra(["job", "list", "p"], env),
        ]
    )
    assert created.returncode == 0, created.stderr
    assert api.request("GET", "/projects/p/jobs/filed", 200).json()["description"] == "from a file"
    assert (
        project.returncode == 0
        and api.request("GET", "/projects/q", 200).json()["display_name"] == "Q q"
    )
    header, *rows = table.stdout.splitlines()
    assert header.split()[0] == "IDENTIFIER" and any(r.split()[0] == "quiet" for r in rows)
    token = run_orchestra(["token", "create", "--user", "reader", "--expires-in", "1d"], env)
    assert token.returncode == 0, token.stderr
    secret = token.stdout.strip().splitlines()[-1]
    as_reader = {**env, "ORCHESTRA_USER": "reader", "ORCHESTRA_TOKEN": secret}
    readable = run_orchestra(["project", "show", "p", "-o", "json"], as_reader)
    assert json.loads(readable.stdout)["identifier"] == "p"
    forbidden = run_orchestra(["project", "delete", "p"], as_reader)
    assert forbidden.returncode == 1 and "403" in one_error_line(forbidden)


async def test_cli_names_a_run_by_a_unique_prefix(populated: Cluster) -> None:
    env = populated.client_env()
    run = direct_run(populated)
    await insert_twins(populated)
    shown, logged, ambiguous, unknown = in_parallel(
        [
            lambda: run_orchestra(["run", "show", "p", run[:8]], env),
            lambda: run_orchestra(["run", "log", "p", run[:13]], env),
            lambda: run_orchestra(["run", "show", "p", TWINS[0][:8]], env),
            lambda: run_orchestra(["run", "show", "p", "fedcba98"], env),
        ]
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["identifier"] == run
    assert logged.returncode == 0, logged.stderr
    assert ambiguous.returncode == 1
    line = one_error_line(ambiguous)
    assert TWINS[0] in line and TWINS[1] in line
    assert unknown.returncode == 1 and "fedcba98" in one_error_line(unknown)
    exact = run_orchestra(["run", "show", "p", TWINS[1][:9] + "2"], env)
    assert json.loads(exact.stdout)["identifier"] == TWINS[1]
    rerun = run_orchestra(["run", "rerun", "p", run[:8], "--follow"], env)
    assert rerun.returncode == 0, rerun.stderr
    new = [r for r in populated.api.runs("p") if r["source"].get("type") == "rerun"]
    assert len(new) == 1 and new[0]["source"]["run"] == run and new[0]["status"] == "succeeded"


def test_cli_exit_statuses_version_and_help(populated: Cluster) -> None:
    env = populated.client_env()
    missing, usage, bad_choice, unknown_option, version, short_help, long_help, no_args = (
        in_parallel(
            [
                lambda: run_orchestra(["job", "show", "p", "nope"], env),
                lambda: run_orchestra(["job", "show", "p"], env),
                lambda: run_orchestra(["job", "list", "p", "-o", "yaml"], env),
                lambda: run_orchestra(["run", "list", "p", "--bogus"], env),
                lambda: run_orchestra(["--version"], env),
                lambda: run_orchestra(["run", "trigger", "-h"], env),
                lambda: run_orchestra(["run", "trigger", "--help"], env),
                lambda: run_orchestra(["project"], env),
            ]
        )
    )
    assert missing.returncode == 1 and "404" in one_error_line(missing)
    for wrong in (usage, bad_choice, unknown_option):
        assert wrong.returncode == 2, wrong
        assert "-h" in one_error_line(wrong)
    assert version.returncode == 0 and version.stdout.strip() == f"orchestra {__version__}"
    assert short_help.returncode == 0 and short_help.stdout == long_help.stdout
    for python_type in ("<str>", "<bool>", "<list[str]>", "{project}"):
        assert python_type not in short_help.stdout
    assert "PROJECT" in short_help.stdout and "KEY=VALUE" in short_help.stdout
    assert no_args.returncode == 2 and "list" in no_args.stdout


def test_admin_refuses_to_create_a_database_it_was_not_pointed_at(tmp_path: Path) -> None:
    stray = tmp_path / "elsewhere"
    stray.mkdir()
    env = clean_env(tmp_path)
    refused = run_orchestra(["admin", "create-token", "admin"], env, cwd=stray)
    assert refused.returncode == 1
    assert "--database" in one_error_line(refused)
    assert list(stray.iterdir()) == []  # no var/, no database
    chosen = tmp_path / "chosen"
    made = run_orchestra(["admin", "migrate", "--data-dir", str(chosen)], env, cwd=stray)
    assert made.returncode == 0, made.stderr
    assert (chosen / "orchestra.sqlite").exists()
    database = f"sqlite:///{tmp_path / 'by-url.sqlite'}"
    by_url = run_orchestra(
        ["admin", "migrate"], {**env, "ORCHESTRA_DATABASE_URL": database}, cwd=stray
    )
    assert by_url.returncode == 0, by_url.stderr
    assert (tmp_path / "by-url.sqlite").exists()


def test_cli_pipeline_trigger_follow_approve_reject_and_cancel(populated: Cluster) -> None:
    env = populated.client_env()
    api = populated.api
    gate = {
        "identifier": "gate",
        "nodes": [
            {"identifier": "approve", "approval": {"description": "go?"}},
            {"identifier": "after", "job": "quiet", "needs": ["approve"]},
        ],
    }
    api.request("POST", "/projects/p/pipelines", 201, json=gate)

    def waiting_run() -> str | None:
        for item in api.pages("/projects/p/pipeline-runs", status="running"):
            if any(n["status"] == "waiting" for n in item["nodes"]):
                return str(item["identifier"])
        return None

    argv = orchestra_argv("pipeline", "trigger", "p", "gate", "--follow")
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as follower:
        run = wait_until(waiting_run, 60, "the approval to wait")
        approved = run_orchestra(
            ["pipeline", "approve", "p", run[:8], "approve", "--comment", "ok"], env
        )
        assert approved.returncode == 0, approved.stderr
        out, err = follower.communicate(timeout=90)
    assert follower.returncode == 0 and out == "", err
    assert "node approve waiting" in err and "node after succeeded" in err, err
    assert err.strip().endswith(f"pipeline run {run} succeeded")
    shown = api.request("GET", f"/projects/p/pipeline-runs/{run}", 200).json()
    assert shown["nodes"][0]["decided_by"] == "admin"

    rejected_run = run_orchestra(["pipeline", "trigger", "p", "gate"], env).stdout.strip()
    wait_until(lambda: waiting_run() == rejected_run, 60, "the second approval to wait")
    rejected = run_orchestra(
        ["pipeline", "reject", "p", rejected_run, "approve", "-o", "json"], env
    )
    assert rejected.returncode == 0, rejected.stderr
    answer = json.loads(rejected.stdout)
    assert answer["nodes"][0]["status"] == "failed"

    cancelled_run = run_orchestra(["pipeline", "trigger", "p", "gate"], env).stdout.strip()
    cancelled = run_orchestra(["pipeline", "cancel", "p", cancelled_run], env)
    assert cancelled.stdout.strip() == f"pipeline run {cancelled_run} cancelled", cancelled.stderr
    again = run_orchestra(["pipeline", "cancel", "p", cancelled_run], env)
    assert again.returncode == 1 and "409" in one_error_line(again)
