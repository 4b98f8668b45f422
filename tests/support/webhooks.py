"""Signing webhook deliveries as GitHub, GitLab and a Standard Webhooks sender do, for the tests
and the bench (docs/events.md, "Webhooks in")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

SECRET = "a-webhook-secret-0123456789"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def github_headers(secret: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Event": "push",
    }


def gitlab_headers(secret: str, delivery: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Token": secret,
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
        "X-Gitlab-Event": "Push Hook",
    }


def standard_headers(
    secret: str, body: bytes, delivery: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    identifier = delivery or f"msg_{uuid.uuid4().hex}"
    moment = int(time.time() if timestamp is None else timestamp)
    key = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode("utf-8"))
    signature = key.sign(identifier, datetime.fromtimestamp(moment, UTC), body.decode())
    return {
        "Content-Type": "application/json",
        "webhook-id": identifier,
        "webhook-timestamp": str(moment),
        "webhook-signature": signature,
    }


def signed(scheme: str, secret: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    """Headers of a good delivery by `scheme`."""
    if scheme == "github":
        return github_headers(secret, body, delivery)
    if scheme == "gitlab":
        return gitlab_headers(secret, delivery)
    return standard_headers(secret, body, delivery)
