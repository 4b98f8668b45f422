"""What happens next in a pipeline run, decided from its nodes' state: no I/O.

A node's status is `pending` until it starts (its needs are not final yet), `waiting` for an
approval awaiting a decision, `skipped` when its `when` cannot hold, then a job node's run's
status, or an approval's decision (`succeeded` approved, `failed` rejected). `decide` looks at
every node in the order of its needs (so a skip, or a node ending `exception` because its
parameters cannot be formatted, is seen by the nodes after it in the same pass) and says which
job nodes start (with their parameters formatted), which end `exception`, which are skipped,
which approvals wait, and, once every node is final, the pipeline run's status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PENDING = "pending"
WAITING = "waiting"
SKIPPED = "skipped"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
EXCEPTION = "exception"
RUNNING = "running"

FINAL_NODE_STATUSES = frozenset({SUCCEEDED, FAILED, "aborted", CANCELLED, EXCEPTION, SKIPPED})
UNSUCCESSFUL = frozenset({FAILED, "aborted", CANCELLED, EXCEPTION})
PIPELINE_RUN_STATUSES = (RUNNING, SUCCEEDED, FAILED, CANCELLED)
WHENS = ("success", "failure", "always")


class CannotRender(Exception):
    """A node's parameters cannot be formatted (a missing result); the message says why."""


# A job node's parameter templates and the results so far ({node: {KEY: value}}) to its
# parameters' values; raises CannotRender.
Render = Callable[[Mapping[str, str], Mapping[str, Mapping[str, str]]], dict[str, str]]


@dataclass(frozen=True)
class NodeState:
    status: str = PENDING
    started: bool = False  # a job node that has (or had) a run

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_NODE_STATUSES

    @property
    def not_started(self) -> bool:
        return self.status in (PENDING, WAITING) and not self.started


@dataclass
class Progress:
    start: dict[str, dict[str, str]] = field(default_factory=dict)  # job node -> parameters
    exceptions: dict[str, str] = field(default_factory=dict)  # job node -> reason
    skip: list[str] = field(default_factory=list)
    wait: list[str] = field(default_factory=list)  # approvals now waiting for a decision
    status: str | None = None  # the pipeline run's final status, once every node is final

    @property
    def changes_nodes(self) -> bool:
        return bool(self.start or self.exceptions or self.skip or self.wait)


def needs_of(node: Mapping[str, Any]) -> list[str]:
    return list(node.get("needs") or [])


def when_of(node: Mapping[str, Any]) -> str:
    return str(node.get("when") or "success")


def ordered(nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The nodes, each after its needs (a definition is checked acyclic when stored; a need
    that names no node is ignored here)."""
    by_id = {str(n["identifier"]): n for n in nodes}
    done: set[str] = set()
    result: list[Mapping[str, Any]] = []
    remaining = list(by_id)
    while remaining:
        progressed = False
        for identifier in list(remaining):
            needs = [n for n in needs_of(by_id[identifier]) if n in by_id]
            if all(n in done for n in needs):
                result.append(by_id[identifier])
                done.add(identifier)
                remaining.remove(identifier)
                progressed = True
        if not progressed:  # a cycle: never stored, but never loop forever either
            result += [by_id[i] for i in remaining]
            break
    return result


def condition(when: str, needs: Sequence[NodeState]) -> bool | None:
    """Whether a node's `when` holds given its needs: True (start it), False (it never
    will: skip it) or None (not yet: a need is not final)."""
    if not all(s.is_final for s in needs):
        return None
    if when == "always":
        return True
    failed = any(s.status in UNSUCCESSFUL for s in needs)
    if when == "failure":
        return failed
    return all(s.status == SUCCEEDED for s in needs)


def final_status(states: Mapping[str, NodeState], cancelled: bool) -> str | None:
    """The pipeline run's status once every node is final, else None."""
    if not all(s.is_final for s in states.values()):
        return None
    if cancelled:
        return CANCELLED
    if any(s.status in UNSUCCESSFUL for s in states.values()):
        return FAILED
    return SUCCEEDED


def decide(
    nodes: Sequence[Mapping[str, Any]],
    states: Mapping[str, NodeState],
    results: Mapping[str, Mapping[str, str]],
    render: Render,
    *,
    cancelled: bool = False,
) -> Progress:
    """What happens next. `states`: each node's state now (a node missing is pending);
    `results`: the results of the job nodes that ran; `cancelled`: the pipeline run was
    cancelled (nothing starts, what has not started is skipped)."""
    now = {str(n["identifier"]): states.get(str(n["identifier"]), NodeState()) for n in nodes}
    progress = Progress()
    for node in ordered(nodes):
        identifier = str(node["identifier"])
        state = now[identifier]
        if not state.not_started:
            continue
        if cancelled:
            progress.skip.append(identifier)
            now[identifier] = NodeState(SKIPPED)
            continue
        if state.status == WAITING:
            continue
        holds = condition(when_of(node), [now[n] for n in needs_of(node) if n in now])
        if holds is None:
            continue
        if not holds:
            progress.skip.append(identifier)
            now[identifier] = NodeState(SKIPPED)
        elif node.get("approval") is not None and node.get("job") is None:
            progress.wait.append(identifier)
            now[identifier] = NodeState(WAITING)
        else:
            try:
                progress.start[identifier] = render(dict(node.get("parameters") or {}), results)
            except CannotRender as error:
                progress.exceptions[identifier] = str(error) or "its parameters cannot be formatted"
                now[identifier] = NodeState(EXCEPTION)
                continue
            now[identifier] = NodeState(PENDING, started=True)
    progress.status = final_status(now, cancelled)
    return progress
