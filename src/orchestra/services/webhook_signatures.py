"""Checking a webhook delivery's signature, by its scheme (docs/events.md, "Webhooks in"); every
comparison in constant time (hmac.compare_digest).

- github: `X-Hub-Signature-256: sha256=HEX(HMAC-SHA256(secret, body))`;
- gitlab: `X-Gitlab-Token: secret`;
- standard: the Standard Webhooks headers, checked by the `standardwebhooks` package (its
  5-minute window on `webhook-timestamp`, `v1,` signatures separated by spaces), with the key
  of domain/webhooks.py `standard_key`.

Each also names the delivery's identifier and event, as the sender's headers give them (for a
Standard Webhooks sender, the event is the body's `type`)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from standardwebhooks import Webhook, WebhookVerificationError

from orchestra.domain.webhooks import standard_key
from orchestra.errors import Unauthenticated

MAX_DELIVERY = 200
MAX_EVENT = 200


@dataclass(frozen=True)
class Delivery:
    """What a delivery says of itself: its identifier (None if its sender gave none) and its
    event (None if unknown)."""

    identifier: str | None
    event: str | None


def verify(signature: str, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise Unauthenticated unless the delivery is signed with `secret` by its scheme.
    `headers`: lower-case names, values as received (latin-1 text)."""
    if signature == "github":
        _github(secret, headers.get("x-hub-signature-256"), body)
    elif signature == "gitlab":
        _gitlab(secret, headers.get("x-gitlab-token"))
    else:
        _standard(secret, headers, body)


def _github(secret: str, given: str | None, body: bytes) -> None:
    if not given:
        raise Unauthenticated("the delivery has no X-Hub-Signature-256 header")
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("latin-1")):
        raise Unauthenticated("the delivery's X-Hub-Signature-256 does not match its body")


def _gitlab(secret: str, given: str | None) -> None:
    if not given:
        raise Unauthenticated("the delivery has no X-Gitlab-Token header")
    if not hmac.compare_digest(secret.encode("utf-8"), given.encode("latin-1")):
        raise Unauthenticated("the delivery's X-Gitlab-Token is not the webhook's secret")


def _standard(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    names = ("webhook-id", "webhook-timestamp", "webhook-signature")
    missing = [name for name in names if not headers.get(name)]
    if missing:
        raise Unauthenticated(f"the delivery has no {', '.join(missing)} header")
    key = standard_key(secret)
    if not key:
        raise Unauthenticated("the webhook's secret is not a usable key")
    try:
        # Header values as received are latin-1; the signed id and timestamp are text.
        Webhook(key).verify(body, {n: headers[n] for n in names}, json_parse=False)
    except WebhookVerificationError as error:
        raise Unauthenticated(f"the delivery's Standard Webhooks signature: {error}") from None
    except ValueError:  # a body that is not UTF-8, a malformed signature or timestamp
        raise Unauthenticated("the delivery's Standard Webhooks headers are malformed") from None


def delivery_of(signature: str, headers: Mapping[str, str], body_type: object) -> Delivery:
    """The delivery's identifier and event by its scheme's headers (`body_type`: the body's
    `type`, the event of a Standard Webhooks sender)."""
    if signature == "github":
        identifier, event = headers.get("x-github-delivery"), headers.get("x-github-event")
    elif signature == "gitlab":
        identifier = headers.get("x-gitlab-event-uuid")
        event = headers.get("x-gitlab-event")
    else:
        identifier = headers.get("webhook-id")
        event = body_type if isinstance(body_type, str) else None
    return Delivery(identifier or None, event[:MAX_EVENT] if event else None)
