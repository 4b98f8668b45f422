"""Reading website forms, and answering form posts with a redirect and a flash message."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from orchestra.errors import InvalidInput


async def form_of(request: Request) -> FormData:
    return await request.form()


def text(form: FormData, name: str, *, required: bool = True, default: str = "") -> str:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name.replace('_', ' ')} is required")
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    return value


def back(path: str, message: str | None = None, error: str | None = None) -> RedirectResponse:
    """303 to a page of this site (never elsewhere), with an optional message to show."""
    if not path.startswith("/") or path.startswith("//"):
        path = "/"
    query = {k: v for k, v in (("message", message), ("error", error)) if v}
    target = quote(path, safe="/@:-._~") + (("?" + urlencode(query)) if query else "")
    return RedirectResponse(target, status_code=303)
