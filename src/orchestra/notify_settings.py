"""The configuration of notifications out (docs/events.md), read from ORCHESTRA_NOTIFY_* and
ORCHESTRA_SMTP_* variables by settings.load_settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from orchestra.errors import InvalidInput

SMTP_SCHEMES = ("smtp", "smtps", "smtp+starttls")


@dataclass(frozen=True)
class SmtpSettings:
    """An SMTP server: `smtp://[USER:PASSWORD@]HOST[:PORT]` (plain), `smtp+starttls://...`
    (STARTTLS) or `smtps://...` (TLS from the start)."""

    scheme: str
    host: str
    port: int
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = "orchestra@localhost"


@dataclass(frozen=True)
class NotifySettings:
    # False: URLs whose host is (or resolves to) a private, loopback or link-local address are
    # refused, when saved and at each attempt (against DNS rebinding).
    allow_private: bool = True
    # Seconds an attempt may take; the first retry's delay (the next ones up to double each);
    # how long an event is retried before it is given up.
    timeout: float = 10.0
    first_retry: float = 5.0
    retry_for: float = 86400.0
    smtp: SmtpSettings | None = None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < math.inf:
        raise InvalidInput(f"{name} must be a positive number of seconds")
    return value


def parse_smtp(raw: str, sender: str) -> SmtpSettings:
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise InvalidInput("ORCHESTRA_SMTP_URL is not a valid URL") from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise InvalidInput(
            "ORCHESTRA_SMTP_URL must be smtp://HOST[:PORT], smtp+starttls://... or smtps://..."
        )
    default_port = 465 if parts.scheme == "smtps" else 587 if "starttls" in parts.scheme else 25
    return SmtpSettings(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        sender=sender or "orchestra@localhost",
    )


def load_notify(env: Mapping[str, str]) -> NotifySettings:
    raw = env.get("ORCHESTRA_NOTIFY_PRIVATE", "").strip().lower()
    if raw not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
        raise InvalidInput(f"ORCHESTRA_NOTIFY_PRIVATE must be true or false, got {raw!r}")
    smtp_url = env.get("ORCHESTRA_SMTP_URL", "").strip()
    return NotifySettings(
        allow_private=raw not in ("0", "false", "no", "off"),
        timeout=_seconds(env, "ORCHESTRA_NOTIFY_TIMEOUT", NotifySettings.timeout),
        first_retry=_seconds(env, "ORCHESTRA_NOTIFY_RETRY_DELAY", NotifySettings.first_retry),
        retry_for=_seconds(env, "ORCHESTRA_NOTIFY_RETRY_FOR", NotifySettings.retry_for),
        smtp=parse_smtp(smtp_url, env.get("ORCHESTRA_SMTP_FROM", "").strip()) if smtp_url else None,
    )
