"""Orchestra's API from Python: `Client` (blocking) and `AsyncClient` (asyncio), both on
httpx, both context managers. Paths are under /api/v1; collections are read page after page;
502, 503 and 504 are tried again with backoff; a refused call raises `ApiError` (its `status`
and the API's `detail`). docs/client.md has examples. This package imports nothing else of
Orchestra: it can be used wherever httpx and PyYAML are installed."""

from __future__ import annotations

from orchestra.client.asynchronous import AsyncClient
from orchestra.client.documents import read_document
from orchestra.client.errors import ApiError, ClientError, DocumentError, Unreachable
from orchestra.client.retries import RetryPolicy
from orchestra.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "DocumentError",
    "RetryPolicy",
    "Unreachable",
    "read_document",
]
