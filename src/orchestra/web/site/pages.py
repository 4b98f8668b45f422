"""The website: server-rendered pages over the same services as the API, in process."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from orchestra.errors import OrchestraError
from orchestra.web.errors import error_response
from orchestra.web.site import (
    logview,
    pages_admin,
    pages_artifacts,
    pages_members,
    pages_notifications,
    pages_runs,
    pages_secrets,
)
from orchestra.web.site import pages_pipeline_runs as pipeline_run_pages
from orchestra.web.site import pages_pipelines as pipeline_pages
from orchestra.web.site import sso as sso_pages
from orchestra.web.site.render import render
from orchestra.web.site.security import LoginRequired, site_authorize

STATIC = Path(__file__).parent / "static"


def site_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(site_authorize)], include_in_schema=False)
    router.include_router(pages_runs.router)
    router.include_router(pages_artifacts.router)
    router.include_router(logview.router)
    router.include_router(pages_admin.router)
    router.include_router(sso_pages.router)
    router.include_router(pages_secrets.router)
    router.include_router(pages_members.router)
    router.include_router(pages_notifications.router)
    router.include_router(pipeline_pages.router)
    router.include_router(pipeline_run_pages.router)
    return router


def install_site(app: FastAPI) -> None:
    """Static files, and errors answered as pages for browsers."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OrchestraError)
        if request.url.path.startswith("/api/") or request.url.path == "/metrics":
            return error_response(exc)
        if isinstance(exc, LoginRequired):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        return render(
            request,
            "error.html",
            status_code=exc.status_code,
            error=exc.message,
            status=exc.status_code,
        )

    async def handle_http(request: Request, exc: Exception) -> Response:
        # An address no route answers (404) or a method none takes (405): a page for a browser,
        # with its title and language like every page, and JSON under the API as before.
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/") or request.url.path == "/metrics":
            return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=exc.headers)
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return render(
            request,
            "error.html",
            status_code=exc.status_code,
            error=message,
            status=exc.status_code,
        )

    app.add_exception_handler(OrchestraError, handle)
    app.add_exception_handler(HTTPException, handle_http)
