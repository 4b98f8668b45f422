"""Topics are packed into as few NOTIFY payloads as fit under PostgreSQL's limit."""

from __future__ import annotations

from orchestra.services.notify import MAX_PAYLOAD, SEPARATOR, payloads


def test_topics_share_one_payload_when_they_fit() -> None:
    assert payloads(["control", "dispatch", "run:a"]) == ["control\ndispatch\nrun:a"]
    assert payloads([]) == []


def test_payloads_stay_under_the_limit_and_keep_every_topic_once() -> None:
    topics = [f"run:{i:036d}" for i in range(1000)]
    packed = payloads(topics)
    assert len(packed) > 1
    assert all(len(p.encode()) < MAX_PAYLOAD for p in packed)
    assert [t for p in packed for t in p.split(SEPARATOR)] == topics
