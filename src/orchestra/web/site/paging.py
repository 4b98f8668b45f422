"""Links between the pages of a list on the website: the same page's address with another
cursor, its filters kept."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

NOT_KEPT = frozenset({"cursor", "message", "error"})


def page_link(request: Request, cursor: str | None) -> str:
    """This page's path and query with `cursor` (none: the first page), its filters kept and
    its flash message dropped."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in NOT_KEPT]
    if cursor:
        kept.append(("cursor", cursor))
    return request.url.path + ("?" + urlencode(kept) if kept else "")
