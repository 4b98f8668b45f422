"""The instance key with real processes: `orchestra admin rotate-key` re-encrypting every secret
under a new key (from the key file or from ORCHESTRA_SECRET_KEY), and a server given the wrong
key, or none, refusing to start with a one-line message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestra.services.keyring import (
    Keyring,
    decode_key,
    new_key,
    read_key_file,
    write_key_file,
)
from orchestra.storage.engine import sync_url
from orchestra.storage.schema import instance_setting, job, project_secret, run, schedule
from tests.support.cluster import Cluster
from tests.support.processes import TEST_SECRET_KEY, run_orchestra

PROJECT_SECRET = "pr0ject-s3cret-value"
DEFAULT = "d3fault-s3cret-value"
GIVEN = "g1ven-s3cret-value"
SCHEDULED = "sch3duled-s3cret-value"
# The key comes from the key file in these tests, not from the variable the harness sets.
FROM_FILE = {"ORCHESTRA_SECRET_KEY": ""}


def ciphertexts(url: str) -> Iterator[tuple[str, str]]:
    """Every encrypted value of the database, with its context."""
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            for row in conn.execute(sa.select(project_secret)).mappings():
                yield row["value"], f"secret:{row['project']}:{row['name']}"
            for row in conn.execute(sa.select(job.c.parameters)).mappings():
                for parameter in row["parameters"]:
                    if parameter.get("secret") and parameter.get("default"):
                        yield parameter["default"], "parameter"
            for table in (run, schedule):
                for row in conn.execute(sa.select(table.c.parameters)).mappings():
                    for value in (row["parameters"] or {}).values():
                        if Keyring.is_encrypted(value):
                            yield value, "parameter"
            check = sa.select(instance_setting.c.value).where(
                instance_setting.c.name == "key_check"
            )
            yield str(conn.scalar(check)), "key_check"
    finally:
        engine.dispose()


def plaintexts(url: str, keyring: Keyring) -> list[str]:
    """Every secret value (and the check value), decrypted with `keyring`."""
    return sorted(keyring.decrypt(value, context) for value, context in ciphertexts(url))


def admin(cluster: Cluster, *arguments: str, settings: dict[str, str] | None = None) -> str:
    done = run_orchestra(
        ["admin", *arguments, "--database", cluster.database_url],
        cluster.env({**FROM_FILE, **(settings or {})}),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused_start(cluster: Cluster, data_dir: Path, settings: dict[str, str]) -> str:
    """Start a server that must refuse to: its one-line error."""
    argv = ["server", "--database", cluster.database_url, "--data-dir", str(data_dir)]
    done = run_orchestra([*argv, "--port", "0"], cluster.env(settings), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()  # log lines first, then the error
    errors = [line for line in lines if line.startswith("orchestra: error: ")]
    assert errors == lines[-1:], done.stderr
    return errors[0]


def fill(cluster: Cluster) -> None:
    """A project secret, a secret parameter's default and given value, and a schedule's."""
    api = cluster.api
    api.request("PUT", "/projects/p/secrets/TOKEN", 201, json={"value": PROJECT_SECRET})
    api.put_job(
        "j",
        [["echo", "{parameters[token]}"]],
        parameters=[{"key": "token", "secret": True, "default": DEFAULT}],
    )
    api.trigger("j", parameters={"token": GIVEN})
    body = {"job": "j", "expression": "@yearly", "parameters": {"token": SCHEDULED}}
    api.request("PUT", "/projects/p/schedules/s", 201, json=body)


EXPECTED = sorted([PROJECT_SECRET, DEFAULT, GIVEN, SCHEDULED, "the Orchestra instance key"])


def test_rotation_with_a_key_file_keeps_every_secret_readable(cluster: Cluster) -> None:
    key_file = cluster.server_dir / "secret.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(TEST_SECRET_KEY + "\n")  # the key the database was bootstrapped with
    old = decode_key(TEST_SECRET_KEY, "test")
    cluster.start(settings=FROM_FILE)
    fill(cluster)
    assert cluster.server is not None
    cluster.server.stop()

    out = admin(cluster, "rotate-key", "--data-dir", str(cluster.server_dir))
    assert "project_secret: 1 values re-encrypted" in out and "run: 1 values" in out
    (new,) = read_key_file(key_file)
    assert new != old and key_file.stat().st_mode & 0o777 == 0o600
    assert plaintexts(cluster.database_url, Keyring([new])) == EXPECTED

    # Interrupted once the next key was written (beside the current one): run again, it ends.
    resumed = new_key()
    write_key_file(key_file, [resumed, new])
    out = admin(cluster, "rotate-key", "--data-dir", str(cluster.server_dir))
    assert "resuming the rotation" in out
    assert read_key_file(key_file) == [resumed]
    assert plaintexts(cluster.database_url, Keyring([resumed])) == EXPECTED

    # A server with the old key alone refuses to start; with the key file it serves.
    stale = cluster.directory / "stale"
    stale.mkdir()
    (stale / "secret.key").write_text(TEST_SECRET_KEY + "\n")
    message = refused_start(cluster, stale, FROM_FILE)
    assert "is not the one the database was encrypted with" in message
    cluster.start_server(settings=FROM_FILE)
    assert cluster.api.request("GET", "/projects/p/secrets").json()["items"][0]["name"] == "TOKEN"
    shown = cluster.api.request("GET", "/projects/p/jobs/j").json()
    assert shown["parameters"][0]["default"] == "***"


def test_rotation_with_the_environment_prints_the_new_key(cluster: Cluster) -> None:
    cluster.start()  # the harness's ORCHESTRA_SECRET_KEY
    fill(cluster)
    assert cluster.server is not None
    cluster.server.stop()

    out = admin(cluster, "rotate-key", settings={"ORCHESTRA_SECRET_KEY": TEST_SECRET_KEY})
    printed = out.strip().splitlines()[-1]
    new = decode_key(printed, "output")
    assert printed != TEST_SECRET_KEY and f": {printed}" in out  # shown before it starts, too
    assert plaintexts(cluster.database_url, Keyring([new])) == EXPECTED

    message = refused_start(
        cluster, cluster.directory / "old", {"ORCHESTRA_SECRET_KEY": TEST_SECRET_KEY}
    )
    assert "ORCHESTRA_SECRET_KEY" in message
    cluster.start_server(settings={"ORCHESTRA_SECRET_KEY": printed})
    assert cluster.api.request("GET", "/projects/p/secrets").json()["items"][0]["name"] == "TOKEN"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ORCHESTRA_SECRET_KEY": "not base64!"}, "base64 of 32 bytes"),
        ({"ORCHESTRA_SECRET_KEY": "c2hvcnQ="}, "base64 of 32 bytes, not 5"),
        # No key at all: a new key file is made, which is not the instance's key.
        ({"ORCHESTRA_SECRET_KEY": ""}, "is not the one the database was encrypted with"),
    ],
)
def test_a_wrong_or_missing_key_is_a_one_line_error(
    cluster: Cluster, settings: dict[str, str], expected: str
) -> None:
    data_dir = cluster.directory / "elsewhere"
    assert expected in refused_start(cluster, data_dir, settings)
