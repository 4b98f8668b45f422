"""`orchestra admin` refuses to make a database nobody pointed it at: run from another folder
without --database, --data-dir, ORCHESTRA_DATABASE_URL or ORCHESTRA_DATA_DIR, it would
otherwise create an empty SQLite database under ./var there and bootstrap users into it."""

from __future__ import annotations

import os
from pathlib import Path

from orchestra.errors import InvalidInput

EXPLICIT_VARIABLES = ("ORCHESTRA_DATABASE_URL", "ORCHESTRA_DATA_DIR")
SQLITE_PREFIXES = ("sqlite:///", "sqlite+aiosqlite:///")


def refuse_stray_database(database: str | None, data_dir: Path | None, url: str) -> None:
    """InvalidInput if `url` is a SQLite file that does not exist and was chosen by default."""
    if database or data_dir is not None or any(os.environ.get(v) for v in EXPLICIT_VARIABLES):
        return
    path = next((url[len(p) :] for p in SQLITE_PREFIXES if url.startswith(p)), None)
    if path is None or path == ":memory:" or Path(path).exists():
        return
    raise InvalidInput(
        f"no database at {path}: give --database URL or --data-dir DIR (or set "
        "ORCHESTRA_DATABASE_URL) to create one; run from the server's folder to use its own"
    )
