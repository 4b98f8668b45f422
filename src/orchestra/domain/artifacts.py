"""Artifacts' rules (docs/artifacts.md): a job's `artifacts` entries, the paths of stored files,
the JUnit counts a run collects, and the limits of an upload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.errors import InvalidInput

WHEN = ("success", "failure", "always")
REPORTS = ("junit",)
MAX_ENTRIES = 100
MAX_PATH = 1000
MAX_FAILURES = 1000  # failed tests' names kept on a run
MAX_NAME = 500  # characters of one failed test's name
MIN_CHUNK = 5 << 20  # every chunk but the last (an S3 multipart part's minimum)
MAX_CHUNK = 16 << 20
SHA256_HEX = frozenset("0123456789abcdef")


def parse_artifacts(raw: object) -> list[dict[str, Any]] | None:
    """A job's `artifacts`: [{"path": GLOB, "when", "report"?}] (None or [] for none). A glob
    that leads out of the workspace (absolute, a `..`) is refused, naming its entry."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("artifacts must be a list of {path, when, report}")
    if len(raw) > MAX_ENTRIES:
        raise InvalidInput(f"artifacts: at most {MAX_ENTRIES} entries")
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        where = f"artifacts[{index}]"
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where} must be a mapping with a path")
        unknown = sorted(set(item) - {"path", "when", "report"})
        if unknown:
            raise InvalidInput(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
        entry: dict[str, Any] = {
            "path": check_glob(item.get("path"), where),
            "when": item.get("when") or "success",
        }
        if entry["when"] not in WHEN:
            raise InvalidInput(f"{where}.when must be one of {', '.join(WHEN)}")
        report = item.get("report")
        if report is not None:
            if report not in REPORTS:
                raise InvalidInput(f"{where}.report must be one of {', '.join(REPORTS)}")
            entry["report"] = report
        entries.append(entry)
    return entries or None


def check_glob(raw: object, where: str = "artifacts") -> str:
    """A glob relative to the workspace that cannot lead out of it."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(f"{where}.path must be a glob relative to the workspace")
    if len(raw) > MAX_PATH:
        raise InvalidInput(f"{where}.path: at most {MAX_PATH} characters")
    if "\x00" in raw or any(ord(c) < 32 for c in raw):
        raise InvalidInput(f"{where}.path {raw!r}: no control characters")
    if raw.startswith(("/", "\\", "~")) or (len(raw) > 1 and raw[1] == ":"):
        raise InvalidInput(
            f"{where}.path {raw!r} is absolute: artifacts are relative to the workspace"
        )
    if any(part == ".." for part in raw.replace("\\", "/").split("/")):
        raise InvalidInput(f"{where}.path {raw!r} leads out of the workspace ('..')")
    return raw


def check_path(raw: object) -> str:
    """A stored file's path: relative, `/`-separated, with no empty, `.` or `..` component, no
    backslash, no control character, at most MAX_PATH characters."""
    if not isinstance(raw, str) or not raw:
        raise InvalidInput("path must be a file's path relative to the workspace")
    if len(raw) > MAX_PATH:
        raise InvalidInput(f"path: at most {MAX_PATH} characters")
    if any(ord(c) < 32 or c == "\x7f" for c in raw):
        raise InvalidInput("path: no NUL or control characters")
    if "\\" in raw:
        raise InvalidInput("path: '/' separates folders (no backslash)")
    if raw.startswith("/"):
        raise InvalidInput(f"path {raw!r} is absolute: it must be relative to the workspace")
    if any(part in ("", ".", "..") for part in raw.split("/")):
        raise InvalidInput(f"path {raw!r}: no empty, '.' or '..' component")
    return raw


def check_sha256(raw: object) -> str:
    if not isinstance(raw, str) or len(raw) != 64 or not set(raw.lower()) <= SHA256_HEX:
        raise InvalidInput("sha256 must be 64 hexadecimal digits")
    return raw.lower()


def parse_junit(raw: object) -> dict[str, Any] | None:
    """A report's counts as the worker sends them: {"passed", "failed", "skipped",
    "failures": [names]}."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("junit must be {passed, failed, skipped, failures}")
    counts: dict[str, Any] = {}
    for name in ("passed", "failed", "skipped"):
        value = raw.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31:
            raise InvalidInput(f"junit.{name} must be a whole number >= 0")
        counts[name] = value
    failures = raw.get("failures") or []
    if not isinstance(failures, list) or not all(isinstance(f, str) for f in failures):
        raise InvalidInput("junit.failures must be a list of test names")
    counts["failures"] = [f[:MAX_NAME] for f in failures[:MAX_FAILURES]]
    return counts


def add_tests(total: Mapping[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
    """Two reports' counts summed (the failed names kept up to MAX_FAILURES)."""
    base = total or {"passed": 0, "failed": 0, "skipped": 0, "failures": []}
    return {
        "passed": int(base.get("passed", 0)) + int(more.get("passed", 0)),
        "failed": int(base.get("failed", 0)) + int(more.get("failed", 0)),
        "skipped": int(base.get("skipped", 0)) + int(more.get("skipped", 0)),
        "failures": [*base.get("failures", []), *more.get("failures", [])][:MAX_FAILURES],
    }
