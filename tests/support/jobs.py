"""Commands for the steps of test jobs."""

from __future__ import annotations

import textwrap

from tests.support.processes import PYTHON


def py(code: str, *arguments: str) -> list[str]:
    """A step command running `code` with this Python; braces are escaped for the command
    template (only `arguments` may hold `{parameters[...]}` fields)."""
    source = textwrap.dedent(code).strip()
    return [PYTHON, "-c", source.replace("{", "{{").replace("}", "}}"), *arguments]


# A step that waits (a minute and a half at most) for the file its first argument names.
WAIT_FOR_FILE = """
    import pathlib, sys, time
    deadline = time.monotonic() + 90
    while not pathlib.Path(sys.argv[1]).exists():
        if time.monotonic() > deadline:
            sys.exit("the file never came")
        time.sleep(0.05)
"""


def numbered_lines(first: int, last: int) -> str:
    """What a job printing `line FIRST` .. `line LAST` writes."""
    return "".join(f"line {n}\n" for n in range(first, last + 1))
