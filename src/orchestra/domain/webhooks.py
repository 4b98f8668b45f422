"""A job's or a pipeline's `webhook` (docs/events.md, "Webhooks in"): its definition's checks,
and what a delivery's JSON body gives it, pure (no I/O).

`{"secret", "signature": "github"|"gitlab"|"standard", "parameters": {KEY: PATH},
"filter": {PATH: REGEX}}`. PATH is a dotted path into the body (`ref`,
`repository.full_name`, `commits.0.id`: a part of digits indexes a list). A filter holds when
`re.search(REGEX, value)` matches the value's text; a parameter missing from the body is not
given (the default applies); a value that is not a string is given as its JSON text.

Filters are operators' patterns run on senders' text: a pattern is at most MAX_PATTERN
characters and must compile with `re`; it is searched by `regex` (the same syntax, which `re`
checked) with a time limit, so that no pattern (`(a+)+$`) can hold a server's event loop; a
value longer than MAX_FILTER_VALUE characters, or a search that runs out of time, does not hold.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

import regex

from orchestra.errors import InvalidInput

SIGNATURES = ("github", "gitlab", "standard")
FIELDS = frozenset({"secret", "signature", "parameters", "filter"})
MASK = "***"
STANDARD_PREFIX = "whsec_"
MIN_SECRET = 16  # characters (a whsec_ key: decoded bytes)
MAX_SECRET_BYTES = 1024
MAX_STORED_SECRET = 4096  # a stored secret (ciphertext) given back unchanged, e.g. by a PATCH
MAX_PATH = 200
MAX_PATH_PARTS = 32
MAX_PATTERN = 500
MAX_PARAMETERS = 100
MAX_FILTERS = 20
MAX_FILTER_VALUE = 65_536
FILTER_SECONDS = 0.05  # a filter's search, at most


def parse_webhook(raw: object, declared: Collection[str], owner: str) -> dict[str, Any] | None:
    """The normalized webhook (None for none), or InvalidInput naming the field. `declared`:
    the keys of the parameters of its `owner` ("job" or "pipeline"). `secret` may be left out
    or be "***" (keep the stored one): the service that stores it decides."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("webhook must be a mapping of secret, signature, parameters, filter")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise InvalidInput(f"webhook: unknown fields {', '.join(unknown)}")
    signature = raw.get("signature")
    if signature not in SIGNATURES:
        raise InvalidInput(f"webhook.signature must be one of {', '.join(SIGNATURES)}")
    secret = raw.get("secret", MASK)
    if not isinstance(secret, str) or not secret or len(secret) > MAX_STORED_SECRET:
        raise InvalidInput("webhook.secret must be a non-empty string")
    return {
        "secret": secret,
        "signature": signature,
        "parameters": _parameters(raw.get("parameters"), declared, owner),
        "filter": _filters(raw.get("filter")),
    }


def check_secret(secret: str) -> str:
    """A new secret (plain text, to be encrypted): long enough, and a whsec_ secret must hold
    the base64 of its key (Standard Webhooks)."""
    try:
        size = len(secret.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("webhook.secret must be valid Unicode") from None
    if size > MAX_SECRET_BYTES:
        raise InvalidInput(f"webhook.secret must be at most {MAX_SECRET_BYTES} bytes")
    if secret.startswith(STANDARD_PREFIX):
        key = standard_key(secret)
        if key is None or len(key) < MIN_SECRET:
            raise InvalidInput(
                f"webhook.secret: a secret written {STANDARD_PREFIX}BASE64 must hold the base64 "
                f"of a key of at least {MIN_SECRET} bytes"
            )
    elif len(secret) < MIN_SECRET:
        raise InvalidInput(f"webhook.secret must be at least {MIN_SECRET} characters")
    return secret


def standard_key(secret: str) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret: the base64-decoded part of `whsec_BASE64`
    (None if it is not base64), the UTF-8 bytes of any other secret."""
    if not secret.startswith(STANDARD_PREFIX):
        return secret.encode("utf-8")
    text = secret[len(STANDARD_PREFIX) :]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _parameters(raw: object, declared: Collection[str], owner: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("webhook.parameters must be a mapping of parameter keys to paths")
    if len(raw) > MAX_PARAMETERS:
        raise InvalidInput(f"webhook.parameters: at most {MAX_PARAMETERS}")
    parameters: dict[str, str] = {}
    for key, path in raw.items():
        if key not in declared:
            raise InvalidInput(
                f"webhook.parameters.{key}: the {owner} declares no parameter {key!r}"
            )
        parameters[key] = check_path(path, f"webhook.parameters.{key}")
    return parameters


def _filters(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("webhook.filter must be a mapping of paths to regular expressions")
    if len(raw) > MAX_FILTERS:
        raise InvalidInput(f"webhook.filter: at most {MAX_FILTERS}")
    filters: dict[str, str] = {}
    for path, pattern in raw.items():
        check_path(path, "webhook.filter: a key")
        where = f"webhook.filter.{path}"
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
            raise InvalidInput(
                f"{where} must be a regular expression of at most {MAX_PATTERN} characters"
            )
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as error:
            raise InvalidInput(
                f"{where}: the regular expression does not compile: {error}"
            ) from None
        filters[path] = pattern
    return filters


def check_path(path: object, where: str) -> str:
    """A dotted path: non-empty parts separated by dots."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or "\x00" in path:
        raise InvalidInput(f"{where} must be a dotted path of at most {MAX_PATH} characters")
    parts = path.split(".")
    if len(parts) > MAX_PATH_PARTS or not all(parts):
        raise InvalidInput(
            f"{where}: {path!r} must be names separated by single dots (at most {MAX_PATH_PARTS})"
        )
    return path


# A delivery's body.

_MISSING = object()


def lookup(body: object, path: str) -> object:
    """The value at `path` in `body`, or _MISSING."""
    value = body
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isascii() and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def text_of(value: object) -> str:
    """A value as a parameter takes it: a string as it is, anything else as its JSON text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def failed_filter(filters: Mapping[str, str], body: object) -> str | None:
    """The path of the first filter that does not hold for `body`, or None when all hold."""
    for path, pattern in filters.items():
        value = lookup(body, path)
        if value is _MISSING:
            return path
        text = text_of(value)
        if len(text) > MAX_FILTER_VALUE:
            return path
        try:
            if regex.search(pattern, text, flags=regex.VERSION0, timeout=FILTER_SECONDS) is None:
                return path
        except TimeoutError:
            return path
    return None


def parameters_from(paths: Mapping[str, str], body: object) -> dict[str, str]:
    """The parameters a delivery gives: those whose path is in the body."""
    given: dict[str, str] = {}
    for key, path in paths.items():
        value = lookup(body, path)
        if value is not _MISSING:
            given[key] = text_of(value)
    return given
