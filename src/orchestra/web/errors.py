"""The one place where exceptions become HTTP answers: {"detail": ...}, never a 500 for input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from orchestra.errors import InvalidInput, OrchestraError, TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "invalid input"


def error_response(exc: OrchestraError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="orchestra"'
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = "60"
    return JSONResponse({"detail": exc.message}, exc.status_code, headers=headers)


def _unavailable(request: Request, exc: Exception, what: str) -> JSONResponse:
    """A 503 the client can retry: the database is down or out of reach for now."""
    method = getattr(request, "method", "WEBSOCKET")
    log.warning("%s during %s %s: %s", what, method, request.url.path, exc)
    return JSONResponse({"detail": f"{what}; try again shortly"}, 503, headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OrchestraError)
    async def _orchestra(_request: Request, exc: OrchestraError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(UnicodeEncodeError)
    async def _not_unicode(_request: Request, _exc: UnicodeEncodeError) -> JSONResponse:
        # JSON may carry a lone surrogate ("\ud800"), which no UTF-8 text can hold: whatever
        # tries to encode it (a cipher, a driver) refuses it, and so does the request.
        return error_response(InvalidInput("text must be valid Unicode (no lone surrogates)"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, 422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        return _unavailable(request, exc, "the database is unavailable")

    @app.exception_handler(PoolTimeout)
    async def _database_busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed busy for the pool's timeout: overload, not a bug.
        return _unavailable(request, exc, "the server is too busy to reach its database")

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold, such as a NUL in a PostgreSQL text: the client's
        # input, so a 422 and not a 500.
        log.info(
            "unstorable value during %s %s: %s",
            getattr(request, "method", "WEBSOCKET"),
            request.url.path,
            exc.orig,
        )
        return JSONResponse({"detail": "invalid input: a value cannot be stored or compared"}, 422)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return JSONResponse({"detail": "the database connection was lost; try again"}, 503)
        log.error(
            "database error during %s %s",
            getattr(request, "method", "WEBSOCKET"),
            request.url.path,
            exc_info=exc,
        )
        return JSONResponse({"detail": "internal error"}, 500)
