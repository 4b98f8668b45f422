"""domain/results.py: a step's KEY=VALUE results file parsed and bounded; worker/results.py: the
file read back safely; protocol/messages.py: the master refuses results past the rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestra.domain.results import (
    MAX_RESULTS_BYTES,
    MalformedResults,
    check_total,
    merge_results,
    parse_results,
    results_size,
)
from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m
from orchestra.worker import results as step_results


def test_lines_blank_lines_and_crlf() -> None:
    data = b"a=1\n\n   \r\nb=two words\r\nc=\nlast=no newline"
    assert parse_results(data) == {"a": "1", "b": "two words", "c": "", "last": "no newline"}


def test_the_value_is_the_rest_of_the_line_equals_signs_included() -> None:
    assert parse_results(b"url=https://x/?a=1&b=2\n") == {"url": "https://x/?a=1&b=2"}
    assert parse_results(b"k==\n") == {"k": "="}


def test_a_later_value_replaces_an_earlier_one() -> None:
    assert parse_results(b"k=1\nk=2\n") == {"k": "2"}
    assert merge_results({"a": "1", "k": "old"}, {"k": "new"}) == {"a": "1", "k": "new"}
    assert merge_results(None, None) is None


def test_keys_follow_the_pattern() -> None:
    assert parse_results(b"_x.y-z9=1\n") == {"_x.y-z9": "1"}
    assert parse_results(("k" * 100 + "=v").encode()) == {"k" * 100: "v"}
    for bad in (b"9lives=1", b"has space=1", b"=1", b"k\xc3\xa9=1", ("k" * 101 + "=v").encode()):
        with pytest.raises(MalformedResults, match=r"line 1 .*does not match"):
            parse_results(bad)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"ok=1\nno equals sign here\n", "line 2 of the results file is not KEY=VALUE"),
        (b"ok=1\n\nk=\xff\xfe\n", "line 3 of the results file is not UTF-8"),
        (b"k=a\x00b\n", "line 1 of the results file: the value contains a NUL"),
    ],
)
def test_a_malformed_line_is_named_by_its_number(data: bytes, said: str) -> None:
    with pytest.raises(MalformedResults, match=said):
        parse_results(data)


def test_a_malformed_line_shows_only_a_short_prefix() -> None:
    secret = "s3cr3t-" * 20
    with pytest.raises(MalformedResults) as raised:
        parse_results(f"not a result {secret}".encode())
    assert secret not in str(raised.value)
    assert "not a result" in str(raised.value)


def test_the_64_kib_limit() -> None:
    value = "v" * (MAX_RESULTS_BYTES - len("k=\n"))
    exact = f"k={value}\n".encode()
    assert len(exact) == MAX_RESULTS_BYTES
    assert results_size(parse_results(exact)) == MAX_RESULTS_BYTES
    check_total(parse_results(exact))
    with pytest.raises(MalformedResults, match="more than the run's limit"):
        parse_results(exact + b"x")
    with pytest.raises(MalformedResults, match="more than its limit"):
        check_total(merge_results({"other": "1"}, parse_results(exact)))
    # A key replaced by a later step counts once.
    check_total(merge_results({"k": "short"}, parse_results(exact)))


def test_the_worker_reads_the_file_once_and_removes_it(tmp_path: Path) -> None:
    path = step_results.results_path(tmp_path / "runs" / "r", "r", 0)
    step_results.prepare(path, None)
    assert path.parent == tmp_path / "results"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    path.write_text("a=1\nb=2\n")
    assert step_results.collect(path, None, {"a": "0", "z": "9"}) == ({"a": "1", "b": "2"}, None)
    assert not path.exists()
    assert step_results.collect(path, None, None) == (None, None)  # none written


def test_the_worker_refuses_a_link_in_place_of_the_file(tmp_path: Path) -> None:
    path = step_results.results_path(tmp_path / "runs" / "r", "r", 1)
    step_results.prepare(path, None)
    private = tmp_path / "token"
    private.write_text("token=do-not-send\n")
    path.unlink()
    os.symlink(private, path)
    results, problem = step_results.collect(path, None, None)
    assert results is None
    assert problem is not None and "plain file" in problem
    assert not os.path.lexists(path)


def test_the_worker_refuses_results_over_the_run_s_limit(tmp_path: Path) -> None:
    path = step_results.results_path(tmp_path / "runs" / "r", "r", 0)
    step_results.prepare(path, None)
    path.write_bytes(b"k=" + b"v" * MAX_RESULTS_BYTES + b"\n")
    results, problem = step_results.collect(path, None, None)
    assert results is None and problem is not None and "limit" in problem


def test_journaled_results_merge_the_step_ends_in_order() -> None:
    events = [
        {"kind": "step_ended", "step": 0, "results": {"a": "1", "k": "0"}},
        {"kind": "output", "step": 1},
        {"kind": "step_ended", "step": 1},
        {"kind": "step_ended", "step": 2, "results": {"k": "2"}},
    ]
    assert step_results.journaled_results(events) == {"a": "1", "k": "2"}


def _step_end(results: object) -> str:
    return (
        '{"type":"report","run":"0f0e0d0c-0b0a-4908-8706-050403020100","events":[{"kind":'
        '"step_ended","sequence":1,"step":0,"status":"succeeded","exit_code":0,'
        f'"date":"2026-11-28T12:00:00+00:00","results":{results}}}]}}'
    )


def test_the_master_takes_results_with_a_step_s_end() -> None:
    report = m.decode_worker_message(_step_end('{"k":"v"}'))
    assert isinstance(report, m.Report)
    (ended,) = report.events
    assert isinstance(ended, m.StepEnded) and ended.results == {"k": "v"}


@pytest.mark.parametrize(
    "results",
    [
        '{"bad key":"v"}',
        '{"k":"a\\u0000b"}',
        '{"k":"two\\nlines"}',
        '{"k":"' + "v" * MAX_RESULTS_BYTES + '"}',
        '{"k":1}',
    ],
)
def test_the_master_refuses_results_past_the_rules(results: str) -> None:
    with pytest.raises(ProtocolError):
        m.decode_worker_message(_step_end(results))


def test_a_step_end_without_results_is_sent_as_before() -> None:
    ended = m.StepEnded.model_validate(
        {"sequence": 1, "step": 0, "status": "succeeded", "date": "2026-11-28T12:00:00Z"}
    )
    assert "results" not in ended.model_dump(mode="json")
    assert "results" not in ended.model_dump_json()
