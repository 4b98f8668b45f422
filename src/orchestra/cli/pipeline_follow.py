"""`orchestra pipeline trigger --follow`: a line on stderr each time a node's status changes,
then the pipeline run's end; 0 only if it succeeded."""

from __future__ import annotations

import time
from typing import Any

import typer

from orchestra.cli.http import Client, Unreachable

ACTIVE = frozenset({"pending", "running"})
PAUSE_SECONDS = 0.5
# How long a follower waits for a server it reached before, and lost, to answer again.
RECONNECT_SECONDS = 60.0


def node_line(node: dict[str, Any]) -> str:
    """`node build running (run 0a1b2c3d)`, with the reason or who decided when there is one."""
    details = []
    if node.get("run"):
        details.append(f"run {str(node['run'])[:8]}")
    if node.get("decided_by"):
        details.append(f"by {node['decided_by']}")
    if node.get("reason"):
        details.append(str(node["reason"]))
    suffix = f" ({', '.join(details)})" if details else ""
    return f"node {node['identifier']} {node['status']}{suffix}"


def follow_pipeline(client: Client, project: str, run: str) -> int:
    """Print node changes until the pipeline run is final; its exit status (0: succeeded)."""
    seen: dict[str, str] = {}
    lost_since: float | None = None
    while True:
        try:
            state = client.pipeline_run(project, run)
        except Unreachable as error:
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                typer.echo(f"{error}; reconnecting", err=True)
            elif now - lost_since > RECONNECT_SECONDS:
                raise
            time.sleep(PAUSE_SECONDS)
            continue
        lost_since = None
        for node in state.get("nodes") or ():
            mark = f"{node['status']}/{node.get('run')}"
            if seen.get(node["identifier"]) != mark:
                seen[node["identifier"]] = mark
                typer.echo(node_line(node), err=True)
        if state["status"] not in ACTIVE:
            typer.echo(f"pipeline run {state['identifier']} {state['status']}", err=True)
            return 0 if state["status"] == "succeeded" else 1
        time.sleep(PAUSE_SECONDS)
