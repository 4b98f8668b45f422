"""Webhook secrets at rest: a job's or a pipeline's `webhook.secret` is stored encrypted with the
instance key, bound to its project and owner (it decrypts nowhere else), and shown as "***".
A write that sends "***" or leaves the secret out keeps the stored one; a value equal to the
stored one keeps its ciphertext, so applying the same document twice changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.domain.webhooks import MASK, check_secret
from orchestra.errors import InvalidInput
from orchestra.services.keyring import Keyring, KeyringError


def webhook_context(project: str, kind: str, owner: str) -> str:
    """The associated data of a webhook secret's ciphertext: `kind` is "job" or "pipeline"."""
    return f"webhook:{project}:{kind}:{owner}"


def seal_webhook(
    keyring: Keyring, webhook: Mapping[str, Any] | None, stored: object, context: str
) -> dict[str, Any] | None:
    """The webhook to store (as parsed by domain/webhooks.py) with its secret encrypted;
    `stored` is the owner's stored `webhook` column (None: none yet)."""
    if webhook is None:
        return None
    before = stored.get("secret") if isinstance(stored, Mapping) else None
    given = webhook["secret"]
    if isinstance(before, str) and Keyring.is_encrypted(before):
        if given in (MASK, before):
            return {**webhook, "secret": before}
        try:
            if keyring.decrypt(before, context) == given:
                return {**webhook, "secret": before}
        except KeyringError:
            pass  # not readable any more: replaced by the value given
    if given == MASK:
        raise InvalidInput(
            f'webhook.secret is required: "{MASK}" (or none) keeps the stored one, '
            "but none is stored"
        )
    return {**webhook, "secret": keyring.encrypt(check_secret(given), context)}


def shown_webhook(webhook: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The webhook as people may see it: its secret masked."""
    if webhook is None:
        return None
    return {**webhook, "secret": MASK}


def open_secret(keyring: Keyring, webhook: Mapping[str, Any], context: str) -> str:
    """The stored webhook's secret in clear (KeyringError if it does not decrypt here)."""
    secret = webhook.get("secret")
    if not isinstance(secret, str) or not Keyring.is_encrypted(secret):
        raise KeyringError("the webhook's secret is not stored encrypted")
    return keyring.decrypt(secret, context)
