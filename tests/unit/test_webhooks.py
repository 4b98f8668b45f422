"""domain/webhooks.py: dotted paths into a delivery's body, parameters as text, filters with
their bounded cost, and the webhook's checks."""

from __future__ import annotations

import time

import pytest

from orchestra.domain.webhooks import (
    MAX_FILTER_VALUE,
    check_secret,
    failed_filter,
    parameters_from,
    parse_webhook,
    standard_key,
)
from orchestra.errors import InvalidInput

BODY = {
    "ref": "refs/heads/main",
    "commits": [{"id": "a"}, {"id": "b", "added": ["x.py"]}],
    "repository": {"full_name": "o/r", "private": False, "size": 12, "topics": None},
    "0": "a key of digits",
}


def test_parameters_from_paths_nested_indexed_and_as_json_text() -> None:
    paths = {
        "ref": "ref",
        "second": "commits.1.id",
        "added": "commits.1.added",
        "private": "repository.private",
        "size": "repository.size",
        "topics": "repository.topics",
        "digits": "0",
        "out_of_range": "commits.5.id",
        "through_a_string": "ref.0",
        "missing": "repository.owner.login",
    }
    assert parameters_from(paths, BODY) == {
        "ref": "refs/heads/main",
        "second": "b",
        "added": '["x.py"]',
        "private": "false",
        "size": "12",
        "topics": "null",
        "digits": "a key of digits",
    }
    assert parameters_from({"all": "ref"}, [1, 2]) == {}
    assert parameters_from({"first": "0"}, ["x"]) == {"first": "x"}


def test_a_filter_holds_when_its_pattern_is_found_in_the_value() -> None:
    assert failed_filter({"ref": "^refs/heads/(main|release-.*)$"}, BODY) is None
    assert failed_filter({"ref": "heads"}, BODY) is None  # re.search, not a full match
    assert failed_filter({"repository.size": "^1[0-9]$"}, BODY) is None
    assert failed_filter({"ref": "^main$"}, BODY) == "ref"
    assert failed_filter({"ref": "main", "nope": "."}, BODY) == "nope"  # a missing path
    assert failed_filter({"ref": "x"}, {"ref": "x" * (MAX_FILTER_VALUE + 1)}) == "ref"


def test_a_pattern_that_backtracks_without_end_runs_out_of_time_and_does_not_hold() -> None:
    started = time.monotonic()
    assert failed_filter({"ref": "(a+)+$"}, {"ref": "a" * 5000 + "!"}) == "ref"
    assert time.monotonic() - started < 5  # 50 ms allowed; a loaded machine checks later


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"signature": "github", "parameters": {"ref": "a..b"}}, "webhook.parameters.ref"),
        ({"signature": "github", "parameters": {"nope": "ref"}}, "declares no parameter"),
        ({"signature": "github", "filter": {"ref": "["}}, "webhook.filter.ref"),
        ({"signature": "github", "filter": {".ref": "x"}}, "webhook.filter"),
        ({"signature": "svn"}, "webhook.signature"),
        ({"signature": "github", "secret": 12}, "webhook.secret"),
        ([], "webhook must be a mapping"),
    ],
)
def test_bad_webhooks_name_their_field(raw: object, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        parse_webhook(raw, {"ref"}, "job")


def test_a_webhook_without_a_secret_keeps_the_stored_one() -> None:
    parsed = parse_webhook({"signature": "gitlab"}, set(), "job")
    assert parsed == {"secret": "***", "signature": "gitlab", "parameters": {}, "filter": {}}
    assert parse_webhook(None, set(), "job") is None


def test_secrets_are_long_enough_and_whsec_keys_are_base64() -> None:
    assert check_secret("a" * 16) == "a" * 16
    assert standard_key("whsec_" + "QUJD" * 6) == b"ABC" * 6
    assert standard_key("plain text") == b"plain text"
    assert standard_key("whsec_!!") is None
    for refused in ("short", "whsec_QUJD", "whsec_!!!!!!!!!!!!!!!!!!!!", "x" * 1025):
        with pytest.raises(InvalidInput, match=r"webhook\.secret"):
            check_secret(refused)
