"""Which workers may take which jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The property a worker sets itself when it can run steps in a sandbox (docs/isolation.md):
# "true" when it can, or why not. A sandboxed run requires it as if its job had asked for it.
SANDBOX_PROPERTY = "sandbox"
SANDBOX_CAPABLE = "true"


def required_properties(
    job_properties: Mapping[str, Any], sandbox: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What a worker must hold to take a run: its job's properties, and sandbox=true when the
    run is sandboxed (a job's own `sandbox` property cannot say otherwise)."""
    if sandbox is None:
        return dict(job_properties)
    return {**job_properties, SANDBOX_PROPERTY: SANDBOX_CAPABLE}


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
