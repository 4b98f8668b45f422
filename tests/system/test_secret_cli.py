"""`orchestra secret list|set|delete` against a real server: the value from stdin, never
printed back."""

from __future__ import annotations

from tests.support.cluster import Cluster
from tests.support.processes import run_orchestra

VALUE = "cl1-s3cret-value"


def test_secrets_are_set_from_stdin_listed_and_deleted(cluster: Cluster) -> None:
    cluster.start()
    env = cluster.client_env()

    done = run_orchestra(["secret", "set", "p", "DEPLOY_KEY"], env, stdin=VALUE + "\n")
    assert done.returncode == 0, done.stderr
    listed = run_orchestra(["secret", "list", "p"], env)
    assert listed.returncode == 0 and listed.stdout.startswith("DEPLOY_KEY ")
    for output in (done.stdout + done.stderr, listed.stdout + listed.stderr):
        assert VALUE not in output
    shown = cluster.api.request("GET", "/projects/p/secrets", 200).json()["items"]
    assert [s["name"] for s in shown] == ["DEPLOY_KEY"]

    empty = run_orchestra(["secret", "set", "p", "EMPTY"], env, stdin="")
    assert empty.returncode == 1 and "empty" in empty.stderr and "Traceback" not in empty.stderr
    bad = run_orchestra(["secret", "set", "p", "bad-name"], env, stdin=VALUE)
    assert bad.returncode == 1 and "422" in bad.stderr and VALUE not in bad.stderr

    deleted = run_orchestra(["secret", "delete", "p", "DEPLOY_KEY"], env)
    assert deleted.returncode == 0, deleted.stderr
    again = run_orchestra(["secret", "delete", "p", "DEPLOY_KEY"], env)
    assert again.returncode == 1 and "404" in again.stderr
