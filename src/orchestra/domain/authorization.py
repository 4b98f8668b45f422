"""The credentials an `Authorization` header carries: a Bearer token, or HTTP Basic (a user
and a token or password). Parsing only: services/users.py checks them."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    secret: str | None  # None: the header named a scheme but its value does not decode
    user: str | None = None  # HTTP Basic's user


def credentials_from_header(header: str) -> Credentials | None:
    """The credentials of an Authorization header's value; None when it carries neither a
    Bearer token nor HTTP Basic."""
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return Credentials(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return Credentials(None)
        user, sep, secret = decoded.partition(":")
        return Credentials(secret, user) if sep else Credentials(None)
    return None
