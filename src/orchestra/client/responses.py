"""An answer of the API turned into its JSON, or into an ApiError carrying its `detail`."""

from __future__ import annotations

import json
from typing import Any

import httpx

from orchestra.client.errors import ApiError, Unreachable
from orchestra.client.retries import UNAVAILABLE

DETAIL_LENGTH = 300


def error_of(response: httpx.Response) -> ApiError:
    """The error an answer of 400 or more stands for."""
    kind = Unreachable if response.status_code in UNAVAILABLE else ApiError
    return kind(response.status_code, detail_of(response))


def detail_of(response: httpx.Response) -> str:
    """The API's one-line `detail`, or the start of whatever else the answer holds."""
    try:
        body = response.json()
    except ValueError:
        text = response.text
    else:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, str):
            text = detail
        elif detail is not None:
            text = json.dumps(detail, separators=(",", ":"), ensure_ascii=False)
        else:
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return " ".join(text.split())[:DETAIL_LENGTH] or response.reason_phrase


def content_of(response: httpx.Response) -> Any:
    """The answer's JSON (None when it has no body); an ApiError for a status of 400 or more."""
    if response.status_code >= 400:
        raise error_of(response)
    if not response.content:
        return None
    return response.json()
