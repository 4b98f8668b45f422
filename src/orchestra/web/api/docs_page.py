"""`/api/v1/docs`: the API browsable with Swagger UI, its script pinned and checked.

The page runs on the website's origin, where the session cookie lives: a script that changed
on the CDN could act as whoever opens the page. So the page loads one exact version of
swagger-ui-dist with Subresource Integrity (a browser refuses a file whose SHA-384 differs from
the one written here, computed from that version's package in the npm registry), and sends a
Content-Security-Policy that allows those two files, its own inline start-up script (by its
hash) and requests to this origin only: no other script, frame, form target or base URL.
docs/security.md says why the page is kept this way rather than dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from orchestra.web.permissions import API

router = APIRouter()

# Changing the version means new hashes: `npm pack swagger-ui-dist@VERSION`, then
# `openssl dgst -sha384 -binary FILE | base64` of package/swagger-ui-bundle.js and swagger-ui.css.
SWAGGER_UI_VERSION = "5.36.0"
CDN = "https://cdn.jsdelivr.net"
SWAGGER_UI = f"{CDN}/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
SCRIPT_INTEGRITY = "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+"
STYLE_INTEGRITY = "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc"

START = (
    "window.ui = SwaggerUIBundle({"
    f"url: {json.dumps(f'{API}/openapi.json')}, dom_id: '#swagger-ui', deepLinking: true, "
    "presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset], "
    "layout: 'BaseLayout'});"
)
START_HASH = base64.b64encode(hashlib.sha256(START.encode()).digest()).decode()

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="referrer" content="no-referrer">
<title>Orchestra API</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css" integrity="{STYLE_INTEGRITY}" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js" integrity="{SCRIPT_INTEGRITY}" crossorigin="anonymous"></script>
<script>{START}</script>
</body>
</html>
"""  # noqa: E501

POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src {SWAGGER_UI}/swagger-ui-bundle.js 'sha256-{START_HASH}'",
        # Swagger UI sets style attributes; a style cannot run a script.
        f"style-src {SWAGGER_UI}/swagger-ui.css 'unsafe-inline'",
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
