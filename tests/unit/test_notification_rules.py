"""domain/notifications.py: retries' delays, the signature (checked by the standardwebhooks
package), private addresses, matching, Slack bodies; settings of notify_settings.py."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from orchestra.domain import notifications as rules
from orchestra.errors import InvalidInput
from orchestra.notify_settings import load_notify
from orchestra.services.notifications import check_target


def test_next_delay_first_within_ten_seconds_each_at_most_double_capped() -> None:
    rng = random.Random(7)
    for _ in range(200):
        delays = [rules.next_delay(None, rng=rng)]
        for _ in range(20):
            delays.append(rules.next_delay(delays[-1], rng=rng))
        assert 5 <= delays[0] <= 10
        for before, after in itertools.pairwise(delays):
            assert after <= 2 * before + 1e-9 and after <= rules.MAX_RETRY_DELAY
        assert delays[-1] == rules.MAX_RETRY_DELAY


@pytest.mark.parametrize("secret", ["whsec_c2VjcmV0LWtleQ==", "plain secret ü"])
def test_signature_verifies_with_the_standard_webhooks_package(secret: str) -> None:
    body = b'{"type":"run.failed"}'
    stamp = int(datetime.now(UTC).timestamp())
    headers = rules.headers(secret, "msg_1", stamp, body)
    key: str | bytes = secret if secret.startswith("whsec_") else secret.encode()
    assert Webhook(key).verify(body, headers) == {"type": "run.failed"}
    assert "webhook-signature" not in rules.headers(None, "msg_1", stamp, body)


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("fe80::1%eth0", True),
        ("0.0.0.0", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
    ],
)
def test_private_addresses(address: str, private: bool) -> None:
    assert rules.is_private_address(address) is private


def test_check_target_refuses_private_literals_when_forbidden() -> None:
    forbid = load_notify({"ORCHESTRA_NOTIFY_PRIVATE": "false"})
    for url in ("http://127.0.0.1:8/x", "http://localhost/x", "https://[::1]/", "http://10.0.0.1"):
        values = rules.parse_notification({"identifier": "n", "events": ["run.failed"], "url": url})
        with pytest.raises(InvalidInput, match="private"):
            check_target(values, forbid)
        check_target(values, load_notify({}))  # allowed by default
    public = {"identifier": "n", "events": ["run.failed"], "url": "https://example.com/x"}
    check_target(rules.parse_notification(public), forbid)


def test_wants_filters_jobs_and_pipelines_apart() -> None:
    target = {"is_enabled": True, "events": ["run.failed", "pipeline.failed"]}
    only = {**target, "jobs": ["a"], "pipelines": None}
    assert rules.wants(only, "run.failed", "a", None)
    assert not rules.wants(only, "run.failed", "b", None)
    assert rules.wants(only, "pipeline.failed", None, "g")  # jobs narrow run events only
    assert not rules.wants(only, "run.succeeded", "a", None)
    assert not rules.wants({**only, "is_enabled": False}, "run.failed", "a", None)


def test_run_events_and_fixed() -> None:
    assert rules.run_events("running") == ["run.started"]
    assert rules.run_events("aborted") == ["run.failed"]
    assert rules.run_events("cancelled") == []
    assert rules.is_fixed("succeeded", "exception")
    assert not rules.is_fixed("succeeded", "succeeded")
    assert not rules.is_fixed("succeeded", None)


def test_slack_body_escapes_its_control_characters() -> None:
    data = {"project": "p", "identifier": "r1", "job": "<b>&", "status": "failed"}
    assert rules.slack_body("run.failed", data) == {
        "text": "Failed (failed): run r1 of job p/&lt;b&gt;&amp;"
    }


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="ORCHESTRA_NOTIFY_PRIVATE"):
        load_notify({"ORCHESTRA_NOTIFY_PRIVATE": "maybe"})
    with pytest.raises(InvalidInput, match="ORCHESTRA_SMTP_URL"):
        load_notify({"ORCHESTRA_SMTP_URL": "http://mail"})
    smtp = load_notify({"ORCHESTRA_SMTP_URL": "smtp+starttls://u%40x:p@mail.test"}).smtp
    assert smtp is not None and (smtp.port, smtp.user, smtp.password) == (587, "u@x", "p")
