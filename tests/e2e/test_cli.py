"""The real `orchestra` processes: a server on a free port, the admin bootstrap commands, and the
client commands against it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.databases import PostgresDatabases
from tests.support.processes import TaggedProcesses, clean_env, orchestra_argv, run_orchestra

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orchestra.yaml"
PASSWORD = "admin password 1"


@dataclass
class Instance:
    url: str
    env: dict[str, str]
    data_dir: Path
    database: list[str] = field(default_factory=list)  # the options naming the database

    def orchestra(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_orchestra(
            list(args), {**self.env, **(env or {})}, stdin=stdin, cwd=self.data_dir
        )

    def admin(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.orchestra("admin", *args, *self.database, stdin=stdin)


@pytest.fixture
def instance(
    engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Instance]:
    """`orchestra server --port 0` on a fresh database; stopped (TERM, then KILL) after."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    processes = TaggedProcesses(tmp_path)
    env = processes.env()
    database: list[str] = ["--data-dir", str(data_dir)]
    server_options = ["--data-dir", str(data_dir)]
    pg_url = None
    if engine_name == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        pg_url = databases.create(migrated=False)
        # The server gets --database; the admin commands read ORCHESTRA_DATABASE_URL.
        server_options += ["--database", pg_url]
        env["ORCHESTRA_DATABASE_URL"] = pg_url
    argv = orchestra_argv("server", "--port", "0", *server_options)
    server = processes.spawn("server", argv, cwd=data_dir)
    try:
        yield Instance(server.wait_until_serving(), env, data_dir, database)
    finally:
        processes.close()
        # Shown by pytest only when the test failed.
        print(f"--- server log ({server.log_path}) ---\n{server.log()}")
        if pg_url is not None:
            databases.drop(pg_url)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure contract: non-zero exit, one stderr line `orchestra: error: ...`."""
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("orchestra: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def bootstrap(instance: Instance) -> str:
    """An administrator with a password and a token; returns the token secret."""
    created = instance.admin(
        "create-user", "admin", "--role", "administrator", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    token = instance.admin("create-token", "admin", "--description", "e2e", "--expires-in", "1d")
    assert token.returncode == 0, token.stderr
    secret = token.stdout.strip().splitlines()[-1]
    assert secret.startswith("orc_")
    return secret


def test_cli_server_bootstrap_apply_and_run_life_cycle(instance: Instance) -> None:
    secret = bootstrap(instance)
    login = httpx.post(
        f"{instance.url}/api/v1/me/login", json={"user": "admin", "password": PASSWORD}, timeout=10
    )
    assert login.status_code == 200
    assert login.json()["user"] == "admin"
    client_env = {
        "ORCHESTRA_URL": instance.url,
        "ORCHESTRA_USER": "admin",
        "ORCHESTRA_TOKEN": secret,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return instance.orchestra(*args, env=client_env)

    first = cli("apply", str(EXAMPLE))
    assert first.returncode == 0, first.stderr
    assert "project example: created" in first.stdout
    headers = {"Authorization": f"Bearer {secret}"}
    before = httpx.get(f"{instance.url}/api/v1/projects/example/jobs", headers=headers).json()
    second = cli("apply", str(EXAMPLE))
    assert second.returncode == 0, second.stderr
    lines = second.stdout.strip().splitlines()
    assert len(lines) == len(first.stdout.strip().splitlines())
    assert all(line.endswith(": unchanged") for line in lines), second.stdout
    after = httpx.get(f"{instance.url}/api/v1/projects/example/jobs", headers=headers).json()
    assert after == before

    triggered = cli("run", "trigger", "example", "hello", "--parameter", "name=x y; z")
    assert triggered.returncode == 0, triggered.stderr
    run_id = triggered.stdout.strip()
    assert str(uuid.UUID(run_id)) == run_id

    listed = cli("run", "list", "example")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    shown = cli("run", "show", "example", run_id)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["identifier"] == run_id
    assert run["parameters"] == {"name": "x y; z"}
    assert run["status"] == "pending"

    cancelled = cli("run", "cancel", "example", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {run_id} cancelled"
    again = cli("run", "cancel", "example", run_id)
    assert "409" in one_error_line(again)
    filtered = cli("run", "list", "example", "--status", "cancelled")
    assert run_id in filtered.stdout
    # Bearer authentication when no user is given.
    bearer = instance.orchestra(
        "run",
        "show",
        "example",
        run_id,
        env={"ORCHESTRA_URL": instance.url, "ORCHESTRA_TOKEN": secret},
    )
    assert json.loads(bearer.stdout)["status"] == "cancelled"


def run_all(calls: list[Callable[[], subprocess.CompletedProcess[str]]]) -> list[str]:
    """Run independent commands at once (each pays the interpreter start); their error lines."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(lambda call: call(), calls))
    return [one_error_line(result) for result in results]


def test_cli_server_errors_are_one_line_on_stderr(instance: Instance, tmp_path: Path) -> None:
    secret = bootstrap(instance)
    env = {"ORCHESTRA_URL": instance.url, "ORCHESTRA_USER": "admin", "ORCHESTRA_TOKEN": secret}
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("projects:\n  - identifier: -bad\n  - identifier: ok/no\n")
    run = str(uuid.uuid4())
    missing, bad_token, apply_invalid, token_for_nobody, duplicate = run_all(
        [
            lambda: instance.orchestra("run", "show", "example", run, env=env),
            lambda: instance.orchestra(
                "run", "list", "example", env={**env, "ORCHESTRA_TOKEN": "orc_wrong"}
            ),
            lambda: instance.orchestra("apply", str(invalid), env=env),
            lambda: instance.admin("create-token", "nobody"),
            lambda: instance.admin("create-user", "admin"),
        ]
    )
    assert "404" in missing
    assert "401" in bad_token
    assert "422" in apply_invalid
    assert "projects[0]" in apply_invalid and "projects[1]" in apply_invalid
    assert "nobody" in token_for_nobody
    assert "admin" in duplicate


def test_cli_client_errors_are_one_line_on_stderr(tmp_path: Path) -> None:
    """Errors found before any server answers: no server needed."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("projects:\n  - identifier: x\n    jobs: [\n")
    local = Instance("http://127.0.0.1:1", clean_env(tmp_path), tmp_path)
    env = {"ORCHESTRA_URL": local.url, "ORCHESTRA_USER": "admin", "ORCHESTRA_TOKEN": "orc_x"}
    unreachable, no_token, bad_parameter, apply_missing, apply_broken, bad_duration, follow = (
        run_all(
            [
                lambda: local.orchestra("run", "list", "example", env=env),
                lambda: local.orchestra("run", "list", "example", env={"ORCHESTRA_URL": local.url}),
                lambda: local.orchestra(
                    "run", "trigger", "example", "hello", "--parameter", "novalue", env=env
                ),
                lambda: local.orchestra("apply", str(tmp_path / "missing.yaml"), env=env),
                lambda: local.orchestra("apply", str(broken), env=env),
                lambda: local.orchestra(
                    "admin", "create-token", "admin", "--expires-in", "soon", "--data-dir", "d"
                ),
                # Never reached: said at once (--follow retries only a stream that dropped).
                lambda: local.orchestra("run", "log", "example", "r", "--follow", env=env),
            ]
        )
    )
    assert "cannot reach" in unreachable
    assert "cannot reach" in follow
    assert "ORCHESTRA_TOKEN" in no_token
    assert "KEY=VALUE" in bad_parameter
    assert "missing.yaml" in apply_missing
    assert "YAML" in apply_broken
    assert "soon" in bad_duration
