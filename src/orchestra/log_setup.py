"""Logging for every process: one line per record, to stderr."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    chosen = (level or os.environ.get("ORCHESTRA_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, chosen, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Access logs at INFO would drown everything else in a busy instance.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
