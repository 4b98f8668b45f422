"""orchestra.cli.client.load_document: YAML as users write it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.cli.client import load_document
from orchestra.domain.documents import parse_document
from orchestra.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orchestra.yaml"


def test_load_document_keeps_on_as_a_string_key(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("retry: {on: [failed], off: no, yes: y}\nflag: true\nother: False\n")
    document = load_document(path)
    assert document["retry"]["on"] == ["failed"]
    assert "on" in document["retry"]
    assert True not in document["retry"]
    assert document["retry"]["off"] == "no"
    assert document["retry"]["yes"] == "y"
    assert document["flag"] is True
    assert document["other"] is False


def test_load_document_reads_the_example(tmp_path: Path) -> None:
    document = load_document(EXAMPLE)
    project = document["projects"][0]
    assert project["identifier"] == "example"
    assert {j["identifier"] for j in project["jobs"]} >= {"hello"}


def test_load_document_refuses_unsafe_tags_and_bad_yaml(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_document(unsafe)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_document(broken)
    with pytest.raises(InvalidInput, match="cannot read"):
        load_document(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInput, match="UTF-8"):
        load_document(binary)


def test_a_document_s_sandbox_and_limits_are_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "isolated.yaml"
    path.write_text(
        "projects:\n"
        "  - identifier: p\n"
        "    jobs:\n"
        "      - identifier: boxed\n"
        "        sandbox: {network: false}\n"
        "        limits: {memory_mb: 512, processes: 64}\n"
        "        steps: [{command: [make]}]\n"
        "      - identifier: open\n"
        "        steps: [{command: [make]}]\n"
        "      - identifier: wrong\n"
        "        sandbox: {network: no}\n"
        "        steps: [{command: [make]}]\n"
    )
    with pytest.raises(InvalidInput, match=r"jobs\[2\]: sandbox.network must be true or false"):
        parse_document(load_document(path))
    path.write_text(path.read_text().replace("network: no", "network: true"))
    jobs = {j["identifier"]: j for j in parse_document(load_document(path))[0]["jobs"]}
    assert jobs["boxed"]["sandbox"] == {"network": False}
    assert jobs["boxed"]["limits"] == {"memory_mb": 512, "processes": 64}
    assert jobs["open"]["sandbox"] is None and jobs["open"]["limits"] is None
    assert jobs["wrong"]["sandbox"] == {"network": True}


def test_anchors_aliases_and_huge_documents_are_refused(tmp_path: Path) -> None:
    """Issue 20: a 544-byte alias bomb made `orchestra apply` take 1.5 GB."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{','.join(['*' + previous] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    with pytest.raises(InvalidInput, match=r"anchors \(&name\) and aliases \(\*name\)"):
        load_document(bomb)
    anchored = tmp_path / "anchored.yaml"
    anchored.write_text("a: &x 1\n")
    with pytest.raises(InvalidInput, match="not allowed"):
        load_document(anchored)
    merged = tmp_path / "merged.yaml"
    merged.write_text("a: {k: 1}\nb:\n  <<: *a\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_document(merged)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * (10 * 1024 * 1024) + b"\n")
    with pytest.raises(InvalidInput, match="larger than 10 MiB"):
        load_document(huge)
