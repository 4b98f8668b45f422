"""The administrator and the workers' user every cluster has, created on a database with the
real `orchestra admin` commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import clean_env, run_orchestra

ADMIN_USER = "admin"  # role administrator
WORKER_USER = "agent"  # role worker


@dataclass(frozen=True)
class Credentials:
    admin_token: str  # of ADMIN_USER
    worker_token: str  # of WORKER_USER


def orchestra_admin(
    database_url: str, data_dir: Path, *arguments: str, stdin: str | None = None
) -> str:
    """Run `orchestra admin ARGUMENTS...` on a database; its output (fails unless it exits 0)."""
    argv = ["admin", *arguments, "--database", database_url, "--data-dir", str(data_dir)]
    done = run_orchestra(argv, clean_env(data_dir), stdin=stdin)
    assert done.returncode == 0, f"orchestra {argv} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def create_token(database_url: str, data_dir: Path, user: str) -> str:
    """The secret of a new token of `user` (`create-token` prints it alone on its last line)."""
    return orchestra_admin(database_url, data_dir, "create-token", user).strip().splitlines()[-1]


def bootstrap(database_url: str, data_dir: Path) -> Credentials:
    """Migrate a database and create the administrator and the workers' user, a token each."""
    orchestra_admin(database_url, data_dir, "create-user", ADMIN_USER, "--role", "administrator")
    orchestra_admin(database_url, data_dir, "create-user", WORKER_USER, "--role", "worker")
    return Credentials(
        admin_token=create_token(database_url, data_dir, ADMIN_USER),
        worker_token=create_token(database_url, data_dir, WORKER_USER),
    )
