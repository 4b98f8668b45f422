"""Which workers may take which jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def worker_matches(job_properties: Mapping[str, Any], worker_properties: Mapping[str, Any]) -> bool:
    """True when the worker holds every key of the job's properties with an equal value; a list
    in the job means any of its values."""
    for key, wanted in job_properties.items():
        if key not in worker_properties:
            return False
        have = worker_properties[key]
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(_same(have, option) for option in options):
            return False
    return True


def _same(have: Any, wanted: Any) -> bool:
    # Worker properties given on the command line are strings; a job's YAML may say `cores: 4`.
    return bool(have == wanted or _text(have) == _text(wanted))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
