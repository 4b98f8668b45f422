"""JUnit XML reports read on the worker: the tests' counts and the failed tests' names.

A report is parsed as it is read (iterparse, each test case dropped once counted: memory stays
flat), by defusedxml with DTDs, entities and external references refused, so that a report a
step wrote cannot make the worker read other files or expand entities without end. A report
that cannot be read is a `MalformedReport` (a line in the run's log, never a crash).

Counted per `<testcase>`: failed when it holds a `<failure>` or an `<error>`, skipped when it
holds a `<skipped>`, passed otherwise. A report without test cases gives the counts of its
top-level `<testsuite>` elements' attributes (tests, failures, errors, skipped) instead.
"""

from __future__ import annotations

from typing import IO, Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

MAX_FAILURES = 1000  # failed tests' names sent at most (domain/artifacts.py keeps as many)
MAX_NAME = 500  # characters of one name
MAX_REPORT_BYTES = 256 << 20  # a bigger file is not read as a report
OUTCOME_TAGS = frozenset({"failure", "error", "skipped"})


class MalformedReport(Exception):
    pass


def parse_report(source: IO[bytes]) -> dict[str, Any]:
    """{"passed", "failed", "skipped", "failures": [names]} of the report read from `source`."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures: list[str] = []
    suites = {"passed": 0, "failed": 0, "skipped": 0}
    cases = 0
    open_elements: list[Element] = []  # from the root to the element being read
    try:
        for event, element in iterparse(source, events=("start", "end"), forbid_dtd=True):
            if event == "start":
                open_elements.append(element)
                continue
            open_elements.pop()
            tag = _local(element.tag)
            if tag == "testcase":
                cases += 1
                outcome = _outcome(element)
                counts[outcome] += 1
                if outcome == "failed" and len(failures) < MAX_FAILURES:
                    failures.append(_name(element))
            elif tag == "testsuite" and len(open_elements) <= 1:
                _add_suite(suites, element)
            elif _outcome_mark(element, tag, open_elements):
                element.clear()  # its test case needs its tag only
                continue
            if open_elements:  # dropped once read: nothing read stays in memory
                open_elements[-1].remove(element)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedReport(_why(exc)) from None
    if cases == 0:
        counts = suites
    return {**counts, "failures": failures}


def _local(tag: object) -> str:
    """A tag without its namespace."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _outcome_mark(element: Element, tag: str, open_elements: list[Element]) -> bool:
    """Is this the first `<failure>`, `<error>` or `<skipped>` of the test case it is in (kept
    until the case is counted)? Any other element is dropped once read, so that no report (a
    flood of `<x/>`) grows the worker's memory."""
    if tag not in OUTCOME_TAGS or not open_elements:
        return False
    case = open_elements[-1]
    if _local(case.tag) != "testcase":
        return False
    return not any(child is not element and _local(child.tag) == tag for child in case)


def _outcome(case: Element) -> str:
    children = {_local(child.tag) for child in case}
    if children & {"failure", "error"}:
        return "failed"
    if "skipped" in children:
        return "skipped"
    return "passed"


def _name(case: Element) -> str:
    name = case.get("name") or "(unnamed)"
    classname = case.get("classname")
    full = f"{classname}.{name}" if classname else name
    printable = "".join(c if c.isprintable() else " " for c in full)
    return printable[:MAX_NAME]


def _add_suite(suites: dict[str, int], suite: Element) -> None:
    tests = _count(suite.get("tests"))
    failed = _count(suite.get("failures")) + _count(suite.get("errors"))
    skipped = _count(suite.get("skipped")) or _count(suite.get("disabled"))
    suites["failed"] += failed
    suites["skipped"] += skipped
    suites["passed"] += max(0, tests - failed - skipped)


def _count(value: str | None) -> int:
    try:
        number = int(value or 0)
    except ValueError:
        return 0
    return number if 0 <= number <= 2**31 else 0


def _why(exc: Exception) -> str:
    if isinstance(exc, DefusedXmlException):
        return "it declares a DTD or entities, which are not read"
    return f"it is not well-formed XML ({exc})"
