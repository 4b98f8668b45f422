"""orchestra.worker.artifacts and worker.junit on a real folder: which files a job's globs take,
what they refuse (globs that lead out, symbolic links that lead out, links on the way, what is
not a plain file, another user's files), and JUnit reports read safely."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orchestra.protocol.messages import AssignedArtifact
from orchestra.worker import artifacts
from orchestra.worker.artifacts import Refused, collect, selected

JUNIT = b"""<?xml version="1.0"?>
<testsuites>
  <testsuite name="a" tests="4">
    <testcase classname="pkg.A" name="test_ok"/>
    <testcase classname="pkg.A" name="test_bad"><failure message="no">trace</failure></testcase>
    <testcase classname="pkg.B" name="test_error"><error/></testcase>
    <testcase name="test_later"><skipped/></testcase>
  </testsuite>
</testsuites>
"""


def rule(path: str, report: str | None = None) -> AssignedArtifact:
    return AssignedArtifact(path=path, report=report)  # type: ignore[arg-type]


def write(root: Path, relative: str, data: bytes = b"x") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    write(root, "out/a.bin", bytes(range(256)) * 10)
    write(root, "out/deep/b.bin", b"\x00\xff" * 100)
    write(root, "out/deep/c.txt", b"c")
    write(root, "out/.hidden.bin", b"h")
    write(root, "top.txt", b"top")
    write(root, "dist/x/y.txt", b"y")
    return root


def paths(root: Path, *globs: str, owner: int | None = None) -> tuple[list[str], list[str]]:
    found, notes = collect(root, [rule(g) for g in globs], owner)
    return [f.path for f in found], notes


def test_globs_match_names_folders_and_any_depth(workspace: Path) -> None:
    assert paths(workspace, "out/*.bin")[0] == ["out/a.bin"]
    assert paths(workspace, "**/*.bin")[0] == ["out/a.bin", "out/deep/b.bin"]
    assert paths(workspace, "out/**")[0] == [
        "out/.hidden.bin",
        "out/a.bin",
        "out/deep/b.bin",
        "out/deep/c.txt",
    ]
    assert paths(workspace, "dist")[0] == ["dist/x/y.txt"]
    assert paths(workspace, "./top.txt", "top.txt")[0] == ["top.txt"]  # each file once
    assert paths(workspace, "out/.hidden.bin")[0] == ["out/.hidden.bin"]
    assert paths(workspace, "out/.*")[0] == ["out/.hidden.bin"]


def test_the_files_are_hashed_as_found(workspace: Path) -> None:
    found, notes = collect(workspace, [rule("out/a.bin")], None)
    data = (workspace / "out/a.bin").read_bytes()
    assert notes == []
    assert (found[0].size, found[0].sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_glob_that_matches_nothing_is_a_line(workspace: Path) -> None:
    found, notes = paths(workspace, "nothing/*.log", "top.txt")
    assert found == ["top.txt"]
    assert notes == ["artifacts: 'nothing/*.log' matches no file"]


@pytest.mark.parametrize("glob", ["../secret", "out/../../x", "/etc/passwd", "a\x00b"])
def test_globs_that_lead_out_are_refused(workspace: Path, glob: str) -> None:
    found, notes = paths(workspace, glob)
    assert found == []
    assert len(notes) == 1 and "refused" in notes[0]


def test_links_that_lead_out_are_refused_and_links_inside_followed_once(
    workspace: Path, tmp_path: Path
) -> None:
    secret = write(tmp_path, "secret.txt", b"secret")
    os.symlink(secret, workspace / "out" / "abs.txt")
    os.symlink("../../secret.txt", workspace / "out" / "rel.txt")
    os.symlink("../top.txt", workspace / "out" / "inside.txt")
    os.symlink("inside.txt", workspace / "out" / "chain.txt")
    found, notes = collect(workspace, [rule("out/*.txt")], None)
    assert [(f.path, f.size) for f in found] == [("out/inside.txt", 3)]  # top.txt's bytes
    refused = sorted(n.split(" ")[1] for n in notes)
    assert refused == ["out/abs.txt", "out/chain.txt", "out/rel.txt"]
    assert all("refused" in n for n in notes)


def test_folders_behind_links_are_not_walked(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "leak.bin")
    os.symlink(outside, workspace / "linked")
    found, notes = paths(workspace, "**/*.bin", "linked/*", "linked")
    assert "linked/leak.bin" not in found
    assert not any("leak" in p for p in found)
    assert any("linked" in n for n in notes)


def test_a_file_reached_through_a_link_cannot_be_opened(workspace: Path, tmp_path: Path) -> None:
    """What makes a swap between the walk and the read harmless: every name on the way is
    opened without following links."""
    outside = tmp_path / "outside"
    write(outside, "a.bin", b"outside")
    os.rename(workspace / "out", workspace / "out-moved")
    os.symlink(outside, workspace / "out")
    root = artifacts.open_workspace(workspace)
    try:
        with pytest.raises(Refused, match="symbolic link"):
            artifacts.open_file(root, "out/a.bin")
    finally:
        os.close(root)


def test_only_plain_files_of_the_owner_are_taken(workspace: Path) -> None:
    os.mkfifo(workspace / "out" / "pipe.bin")
    found, notes = paths(workspace, "out/pipe.bin")
    assert found == [] and "not a plain file" in notes[0]
    found, notes = paths(workspace, "top.txt", owner=os.getuid() + 1)
    assert found == [] and "not the steps' user's" in notes[0]


def test_when_selects_by_the_runs_outcome() -> None:
    rules = [
        AssignedArtifact(path="s", when="success"),
        AssignedArtifact(path="f", when="failure"),
        AssignedArtifact(path="a", when="always"),
    ]
    assert [r.path for r in selected(rules, "succeeded")] == ["s", "a"]
    for status in ("failed", "aborted", "exception"):
        assert [r.path for r in selected(rules, status)] == ["f", "a"]


def test_junit_reports_are_counted(workspace: Path) -> None:
    write(workspace, "reports/junit.xml", JUNIT)
    found, notes = collect(workspace, [rule("reports/*.xml", "junit")], None)
    assert notes == []
    assert found[0].junit == {
        "passed": 1,
        "failed": 2,
        "skipped": 1,
        "failures": ["pkg.A.test_bad", "pkg.B.test_error"],
    }


def test_a_report_of_suites_alone_counts_their_attributes(workspace: Path) -> None:
    write(workspace, "r.xml", b'<testsuite tests="5" failures="1" errors="1" skipped="1"/>')
    found, _ = collect(workspace, [rule("r.xml", "junit")], None)
    assert found[0].junit == {"passed": 2, "failed": 2, "skipped": 1, "failures": []}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"<testsuite><testcase", "not well-formed"),
        (
            b'<!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b'<testsuite><testcase name="&b;"/></testsuite>',
            "DTD",
        ),
        (
            b'<!DOCTYPE t [<!ENTITY e SYSTEM "file:///etc/passwd">]><testsuite>&e;</testsuite>',
            "DTD",
        ),
    ],
)
def test_a_bad_report_is_a_line_and_the_file_is_still_kept(
    workspace: Path, data: bytes, why: str
) -> None:
    write(workspace, "bad.xml", data)
    found, notes = collect(workspace, [rule("bad.xml", "junit")], None)
    assert [f.path for f in found] == ["bad.xml"] and found[0].junit is None
    assert len(notes) == 1 and why in notes[0]
