"""The one exception hierarchy; each edge (HTTP, CLI, protocol) translates it."""

from __future__ import annotations


class OrchestraError(Exception):
    """Something went wrong."""

    status_code = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(OrchestraError):
    """The input is not valid."""

    status_code = 422


class Unauthenticated(OrchestraError):
    """Authentication is required."""

    status_code = 401


class Forbidden(OrchestraError):
    """You are not allowed to do this."""

    status_code = 403


class NotFound(OrchestraError):
    """No such resource."""

    status_code = 404


class Conflict(OrchestraError):
    """The request conflicts with the current state."""

    status_code = 409


class PayloadTooLarge(OrchestraError):
    """The payload is too large."""

    status_code = 413


class TooManyRequests(OrchestraError):
    """Too many attempts; try again later."""

    status_code = 429


class Unavailable(OrchestraError):
    """The service is temporarily unavailable."""

    status_code = 503


class ProtocolError(OrchestraError):
    """The peer sent a message that breaks the worker protocol."""

    status_code = 400
