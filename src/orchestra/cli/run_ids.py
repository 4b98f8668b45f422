"""A run named by a unique prefix of its identifier (at least 8 characters), as `run list`
shows them: resolved through the collection of runs (or of pipeline runs)."""

from __future__ import annotations

import re

from orchestra.client import Client
from orchestra.errors import InvalidInput

MIN_PREFIX = 8
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIX = re.compile(r"^[0-9a-f-]+$")
SHOWN_CANDIDATES = 10


def resolve(client: Client, collection: str, given: str) -> str:
    """The identifier of the one item of `collection` (a path) whose identifier starts with
    `given`. A full identifier, or anything that is not a hexadecimal prefix of at least 8
    characters, is passed on as it is (the API says if no such run exists)."""
    prefix = given.lower()
    if _UUID.match(prefix) or len(prefix) < MIN_PREFIX or not _PREFIX.match(prefix):
        return given
    matches = [
        item["identifier"]
        for item in client.items(collection)
        if str(item["identifier"]).startswith(prefix)
    ]
    if not matches:
        raise InvalidInput(f"no run's identifier starts with {given!r}")
    if len(matches) > 1:
        shown = ", ".join(matches[:SHOWN_CANDIDATES])
        more = (
            f" and {len(matches) - SHOWN_CANDIDATES} more"
            if len(matches) > SHOWN_CANDIDATES
            else ""
        )
        raise InvalidInput(f"{given!r} names {len(matches)} runs: {shown}{more}")
    return str(matches[0])


def run(client: Client, project: str, given: str) -> str:
    """A run of `project` named by its identifier or a unique prefix of it."""
    return resolve(client, f"/projects/{project}/runs", given)


def pipeline_run(client: Client, project: str, given: str) -> str:
    """A pipeline run of `project` named by its identifier or a unique prefix of it."""
    return resolve(client, f"/projects/{project}/pipeline-runs", given)
