"""The worker's token, kept out of sight: read from a file or standard input, and when it was
given on the command line (every user of the machine sees it in ps) or in the environment
(its processes of the same user can read /proc/PID/environ), the worker starts itself again
with the token on a pipe instead, so that neither shows it for longer than its start."""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestra.errors import InvalidInput

TOKEN_VARIABLE = "ORCHESTRA_TOKEN"
_DESCRIPTOR = re.compile(r"/dev/fd/([0-9]+)")


def read_token(
    token: str | None, token_file: Path | None, environ: Mapping[str, str]
) -> tuple[str | None, bool]:
    """The token, and whether it was given where other processes can read it."""
    if token is not None and token_file is not None:
        raise InvalidInput("give --token or --token-file, not both")
    if token == "-" or (token_file is not None and str(token_file) == "-"):
        return _one_line(sys.stdin.readline(), "standard input"), False
    if token_file is not None:
        return _read_file(token_file), False
    if token is not None:
        return _one_line(token, "--token"), True
    if environ.get(TOKEN_VARIABLE):
        return _one_line(environ[TOKEN_VARIABLE], TOKEN_VARIABLE), True
    return None, False


def _read_file(path: Path) -> str:
    descriptor = _DESCRIPTOR.fullmatch(str(path))
    try:
        if descriptor is not None:
            # A pipe from the process that started this one: read it and close it, so that
            # nothing this worker starts inherits it.
            with os.fdopen(int(descriptor[1]), encoding="utf-8") as handle:
                return _one_line(handle.read(), str(path))
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            sys.stderr.write(
                f"orchestra: warning: other users may read the token file {path} "
                f"(mode {stat.S_IMODE(mode):o}): chmod 600 it\n"
            )
        return _one_line(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise InvalidInput(f"cannot read the token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"the token file {path} is not text") from None


def _one_line(text: str, where: str) -> str:
    token = text.strip()
    if not token or "\n" in token:
        raise InvalidInput(f"{where} must hold the token alone, on one line")
    return token


def without_token_in_sight(token: str) -> None:
    """Execute this `orchestra worker` again, the token on a pipe (--token-file /dev/fd/N)
    instead of its arguments and environment. Returns only when this process is not an
    `orchestra worker` command line (a test calling the function, say)."""
    arguments = sys.orig_argv
    try:
        position = arguments.index("worker")
    except ValueError:
        return
    read, write = os.pipe()
    os.write(write, token.encode() + b"\n")  # far below a pipe's capacity
    os.close(write)
    os.set_inheritable(read, True)
    kept = _without_token(arguments[position + 1 :])
    argv = [*arguments[: position + 1], *kept, "--token-file", f"/dev/fd/{read}"]
    environment = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environment)


def _without_token(arguments: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--token":
            skip = True
        elif not argument.startswith("--token="):
            kept.append(argument)
    return kept
