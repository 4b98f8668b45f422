"""`/api/v1/docs`: the API browsable with Swagger UI, from files installed with Orchestra.

Swagger UI's script and style come from the PyPI package `swagger-ui-bundle-v2` (a dependency:
Swagger UI 5, which reads OpenAPI 3.1), and are served by this app under `/api/v1/docs/assets/`:
the page works with no network, and runs no script but those files and its own start-up file,
which the Content-Security-Policy allows (`'self'`, no inline script, no other origin). The page
runs on the website's origin, where the session cookie lives, but the API never reads that
cookie (web/auth.py): to try operations, a reader uses Swagger UI's Authorize button with a
token (bearer, or HTTP Basic with the user and a token), as the OpenAPI document's security
schemes say (web/api/openapi.py).
"""

from __future__ import annotations

import functools
import importlib.resources
import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from orchestra.errors import NotFound
from orchestra.web.permissions import API

router = APIRouter()

ASSETS = f"{API}/docs/assets"
# The only files served, by name: what the page loads, and nothing else of the package.
FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "start.js": "text/javascript; charset=utf-8",
}

# Swagger UI's own start: the document's URL, and the Authorize dialog's token kept across
# reloads of the page (in the browser's storage of this origin, as Swagger UI does it).
START = (
    "window.ui = SwaggerUIBundle({"
    f"url: {json.dumps(f'{API}/openapi.json')}, dom_id: '#swagger-ui', deepLinking: true, "
    "persistAuthorization: true, "
    "presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset], "
    "layout: 'BaseLayout'});\n"
)

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="referrer" content="no-referrer">
<title>Orchestra API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/start.js"></script>
</body>
</html>
"""

POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # Swagger UI sets style attributes; a style cannot run a script.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@router.get(f"{API}/docs", include_in_schema=False)
async def docs_page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=HEADERS)


@router.get(f"{ASSETS}/{{name}}", include_in_schema=False)
async def docs_asset(name: str) -> Response:
    if name not in FILES:
        raise NotFound(f"no file {name!r} for the API's docs page")
    return Response(
        _content(name),
        media_type=FILES[name],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
    )


@functools.cache
def _content(name: str) -> bytes:
    """A file of the page, read once from the installed package (or the start-up script)."""
    if name == "start.js":
        return START.encode()
    # The package's files are in vendor/swagger-ui-VERSION/ (found by name: read, not imported).
    vendor = importlib.resources.files("swagger_ui_bundle").joinpath("vendor")
    (folder,) = (f for f in vendor.iterdir() if f.name.startswith("swagger-ui-"))
    return folder.joinpath(name).read_bytes()
