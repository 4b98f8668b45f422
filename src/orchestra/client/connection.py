"""Where the client connects and as whom: arguments first, then ORCHESTRA_URL, ORCHESTRA_USER
and ORCHESTRA_TOKEN. A user and a token make HTTP Basic; a token alone, a bearer token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

API_PATH = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8080"
FINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "aborted", "cancelled", "exception"})
ACTIVE_PIPELINE_STATUSES = frozenset({"pending", "running"})
PAGE_LIMIT = 500
# A followed log with nothing to read for this long is taken for a connection that silently
# died (a host gone without a reset).
STREAM_READ_TIMEOUT = 120.0


@dataclass(frozen=True)
class Connection:
    url: str
    user: str | None
    token: str | None

    @classmethod
    def resolve(cls, url: str | None, user: str | None, token: str | None) -> Connection:
        url = url or os.environ.get("ORCHESTRA_URL") or DEFAULT_URL
        user = user if user is not None else os.environ.get("ORCHESTRA_USER") or None
        token = token if token is not None else os.environ.get("ORCHESTRA_TOKEN") or None
        return cls(url.rstrip("/"), user, token)

    def httpx_options(self, timeout: float) -> dict[str, Any]:
        """The keyword arguments of httpx.Client or httpx.AsyncClient for this connection."""
        headers = {"User-Agent": "orchestra-client"}
        auth: httpx.Auth | None = None
        if self.token and self.user:
            auth = httpx.BasicAuth(self.user, self.token)
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {
            "base_url": self.url + API_PATH,
            "auth": auth,
            "headers": headers,
            "timeout": httpx.Timeout(timeout),
        }


def api_path(path: str) -> str:
    """A path under /api/v1 as given ("/projects"), or with the prefix ("/api/v1/projects")."""
    if not path.startswith("/"):
        path = "/" + path
    return path.removeprefix(API_PATH) if path.startswith(API_PATH + "/") else path


def page_params(params: dict[str, Any], cursor: str | None, limit: int) -> dict[str, Any]:
    """The query of one page of a collection: the filters given (None ones dropped)."""
    query = {"limit": limit, **{k: v for k, v in params.items() if v is not None}}
    if cursor:
        query["cursor"] = cursor
    return query


def log_params(offset: int, follow: bool) -> dict[str, str]:
    params = {"offset": str(offset)} if offset else {}
    if follow:
        params["follow"] = "true"
    return params


def stream_timeout(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout, read=STREAM_READ_TIMEOUT)
