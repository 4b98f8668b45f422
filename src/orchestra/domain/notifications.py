"""Notifications out: what a notification may say, which events a change makes, how an event
is signed and formatted, and when a failed attempt is tried again. No I/O.

A notification sends a project's run and pipeline events to a URL (JSON, or a Slack-compatible
body) or to an e-mail address. Its `secret` signs each request with the Standard Webhooks
headers: the key is the base64-decoded part of a secret written `whsec_BASE64`, else the UTF-8
bytes of the secret (the rule of the webhooks Orchestra receives, CONTRACT.md section 8).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from orchestra.domain.identifiers import check_identifier
from orchestra.errors import InvalidInput

RUN_STARTED = "run.started"
RUN_SUCCEEDED = "run.succeeded"
RUN_FAILED = "run.failed"
RUN_FIXED = "run.fixed"
PIPELINE_SUCCEEDED = "pipeline.succeeded"
PIPELINE_FAILED = "pipeline.failed"
APPROVAL_WAITING = "approval.waiting"
SCHEDULE_SKIPPED = "schedule.skipped"
EVENTS = (
    RUN_STARTED,
    RUN_SUCCEEDED,
    RUN_FAILED,
    RUN_FIXED,
    PIPELINE_SUCCEEDED,
    PIPELINE_FAILED,
    APPROVAL_WAITING,
    SCHEDULE_SKIPPED,
)
RUN_EVENTS = frozenset({RUN_STARTED, RUN_SUCCEEDED, RUN_FAILED, RUN_FIXED})
PIPELINE_EVENTS = frozenset({PIPELINE_SUCCEEDED, PIPELINE_FAILED, APPROVAL_WAITING})
FORMATS = ("json", "slack")
FIELDS = frozenset(
    {"identifier", "events", "jobs", "pipelines", "url", "email", "secret", "format", "is_enabled"}
)
# A run's statuses that end it as a failure (a cancelled run never ran: neither).
FAILED_RUN_STATUSES = frozenset({"failed", "aborted", "exception"})
MASK = "***"
MAX_URL_LENGTH = 2000
MAX_SECRET_LENGTH = 1000
MAX_NAMES = 500
_EMAIL = re.compile(r"[^@\s<>\",;:]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")

# Retries: the first within FIRST_RETRY * 2 seconds, each later one after 1.5 to 2 times the
# delay before (so never more than double it), at most MAX_RETRY_DELAY.
FIRST_RETRY = 5.0
MAX_RETRY_DELAY = 600.0
RETRY_FOR = 86400.0


def _names(raw: object, what: str) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_NAMES:
        raise InvalidInput(f"{what} must be a list of identifiers (or left out for all)")
    return list(dict.fromkeys(check_identifier(name, what) for name in raw))


def check_events(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"events must be a non-empty list of: {', '.join(EVENTS)}")
    for event in raw:
        if event not in EVENTS:
            raise InvalidInput(f"unknown event {event!r} (events: {', '.join(EVENTS)})")
    return list(dict.fromkeys(raw))


def check_url(raw: object) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be an http or https URL of at most {MAX_URL_LENGTH} chars")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"url is not a valid URL: {raw!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an http:// or https:// URL with a host")
    if any(c.isspace() or ord(c) < 32 for c in raw):
        raise InvalidInput("url must not contain spaces or control characters")
    if port == 0:
        raise InvalidInput("url must not name port 0")
    return raw


def check_email(raw: object) -> str:
    if not isinstance(raw, str) or len(raw) > 320 or not _EMAIL.fullmatch(raw):
        raise InvalidInput(f"email must be one address (name@example.com), got {raw!r}")
    return raw


def check_secret(raw: object) -> str | None:
    """A secret as given: None (no signature), the mask (keep the stored one) or a value."""
    if raw is None or raw == MASK:
        return raw
    if not isinstance(raw, str) or not raw or len(raw) > MAX_SECRET_LENGTH:
        raise InvalidInput(f"secret must be a non-empty string of at most {MAX_SECRET_LENGTH}")
    if raw.startswith("whsec_"):
        try:
            base64.b64decode(raw[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("a secret written whsec_... must be followed by base64") from None
    return raw


def parse_notification(raw: object) -> dict[str, Any]:
    """A notification's values from the API or an apply document (its secret as given:
    services/notifications.py seals it)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("a notification must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise InvalidInput(f"notification: unknown fields {', '.join(unknown)}")
    url, email = raw.get("url"), raw.get("email")
    if (url is None) == (email is None):
        raise InvalidInput("a notification names exactly one of url and email")
    fmt = raw.get("format", "json") or "json"
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
    enabled = raw.get("is_enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("is_enabled must be true or false")
    return {
        "identifier": check_identifier(raw.get("identifier"), "notification identifier"),
        "events": check_events(raw.get("events")),
        "jobs": _names(raw.get("jobs"), "jobs"),
        "pipelines": _names(raw.get("pipelines"), "pipelines"),
        "url": None if url is None else check_url(url),
        "email": None if email is None else check_email(email),
        "secret": check_secret(raw.get("secret")),
        "format": fmt,
        "is_enabled": enabled,
    }


def is_private_address(address: str) -> bool:
    """Is this IP address one a notification may not reach when private targets are
    forbidden (loopback, private ranges, link-local, unspecified, multicast, reserved)?"""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return True
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or ip in _IPV4_COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:  # an IPv4 address in IPv6 clothes: judged as itself
            ip = embedded
    return not ip.is_global or ip.is_multicast


# IPv6 forms that carry an IPv4 address (NAT64, the deprecated IPv4-compatible ::a.b.c.d); a
# local-use NAT64 prefix reaches the network's own addresses.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


# Matching -------------------------------------------------------------------------------------


def wants(
    notification: Mapping[str, Any], event: str, job: str | None, pipeline: str | None
) -> bool:
    """Does this notification want `event` of this job's run (or this pipeline's)? Its `jobs`
    narrow run events and job schedules, its `pipelines` pipeline events and pipeline
    schedules; each left out (null) means all."""
    if not notification["is_enabled"] or event not in notification["events"]:
        return False
    if job is not None and notification["jobs"] is not None:
        return job in notification["jobs"]
    if pipeline is not None and notification["pipelines"] is not None:
        return pipeline in notification["pipelines"]
    return True


def run_events(status: str | None) -> list[str]:
    """The events of a run that has this status after a change (run.fixed is decided apart:
    it needs the job's previous final run)."""
    if status == "running":
        return [RUN_STARTED]
    if status == "succeeded":
        return [RUN_SUCCEEDED]
    if status in FAILED_RUN_STATUSES:
        return [RUN_FAILED]
    return []


def is_fixed(status: str, previous: str | None) -> bool:
    """run.fixed: this run succeeded and the job's previous run that ran to an end did not."""
    return status == "succeeded" and previous in FAILED_RUN_STATUSES


# Signing and bodies ---------------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode("utf-8")


def signature(secret: str, message: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: v1,BASE64(HMAC-SHA256(key,
    "id.timestamp.body"))."""
    signed = f"{message}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: str | None, message: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: webhook-id (stable across retries), webhook-timestamp and,
    with a secret, webhook-signature."""
    found = {
        "content-type": "application/json",
        "webhook-id": message,
        "webhook-timestamp": str(timestamp),
    }
    if secret:
        found["webhook-signature"] = signature(secret, message, timestamp, body)
    return found


def _subject(event: str, data: Mapping[str, Any]) -> str:
    project = data.get("project", "?")
    if event in RUN_EVENTS:
        return f"run {data.get('identifier', '?')} of job {project}/{data.get('job', '?')}"
    if event == SCHEDULE_SKIPPED:
        return f"schedule {project}/{data.get('identifier', '?')}"
    return f"pipeline run {data.get('identifier', '?')} of {project}/{data.get('pipeline', '?')}"


def summary(event: str, data: Mapping[str, Any]) -> str:
    """One line saying what happened, for Slack and e-mail subjects."""
    subject = _subject(event, data)
    status = data.get("status")
    if event == RUN_STARTED:
        return f"Started: {subject}"
    if event == RUN_SUCCEEDED:
        return f"Succeeded: {subject}"
    if event == RUN_FAILED:
        reason = data.get("reason")
        return f"Failed ({status}): {subject}" + (f": {reason}" if reason else "")
    if event == RUN_FIXED:
        return f"Fixed: {subject} succeeded after a failure"
    if event == PIPELINE_SUCCEEDED:
        return f"Succeeded: {subject}"
    if event == PIPELINE_FAILED:
        return f"Failed: {subject}"
    if event == APPROVAL_WAITING:
        waiting = [
            n.get("identifier") for n in data.get("nodes", []) if n.get("status") == "waiting"
        ]
        return f"Waiting for approval ({', '.join(map(str, waiting)) or 'a node'}): {subject}"
    reason = data.get("last_skip_reason")
    return f"Skipped a firing of {subject}" + (f": {reason}" if reason else "")


def slack_body(event: str, data: Mapping[str, Any]) -> dict[str, str]:
    """A Slack-compatible body (incoming webhooks, and the services that take the same):
    plain text, with Slack's three control characters escaped."""
    text = summary(event, data)
    return {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}


# Retries ----------------------------------------------------------------------------------------


def next_delay(
    previous: float | None, first: float = FIRST_RETRY, rng: random.Random | None = None
) -> float:
    """Seconds before the next attempt: the first in [first, 2 * first], each later one 1.5 to 2
    times the one before (jitter that keeps it at most double), capped at MAX_RETRY_DELAY."""
    draw = (rng or random).uniform
    if previous is None:
        return min(MAX_RETRY_DELAY, first * draw(1.0, 2.0))
    return min(MAX_RETRY_DELAY, previous * draw(1.5, 2.0))


def error_text(error: str, limit: int = 1000) -> str:
    return error if len(error) <= limit else error[: limit - 1] + "…"
