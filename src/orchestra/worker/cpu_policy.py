"""How the agent asks the CPU scheduler to treat it, and its steps.

Linux: the agent runs as SCHED_BATCH, so that waking it (a frame from the master, a message
from its spawner) does not preempt the process running at that moment: a job's step on a busy
worker, or the master itself where the two share a machine (`orchestra server --local-workers`,
the benchmarks), whose every write to a worker otherwise handed the CPU to that worker (1.6
times per run in W2). The agent still gets its fair share of the CPU; it waits for its turn
instead of taking it. Needs no privilege. A policy is inherited by child processes, so the
spawner puts itself back to the agent's former policy before it starts any step: a job's
processes are scheduled as they would have been. An agent started under another policy than
the normal one (an administrator's choice) is left as it is.
"""

from __future__ import annotations

import os

_former: int | None = None  # the policy the agent ran under before, if it changed it


def yield_on_wakeup() -> None:
    global _former
    batch, normal = getattr(os, "SCHED_BATCH", None), getattr(os, "SCHED_OTHER", None)
    if batch is None or normal is None:
        return  # not Linux
    try:
        if os.sched_getscheduler(0) != normal:
            return
        os.sched_setscheduler(0, batch, os.sched_param(0))
    except OSError:
        return
    _former = normal


def spawner_arguments() -> list[str]:
    """What the spawner is told so that its steps run under the agent's former policy."""
    return [] if _former is None else ["--policy", str(_former)]
