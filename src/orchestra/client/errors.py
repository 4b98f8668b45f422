"""What a call of the client raises: the API's answer (`ApiError`, with its status and
`detail`), a server that could not be reached (`Unreachable`), a document it cannot read."""

from __future__ import annotations


class ClientError(Exception):
    """A call of the Orchestra client failed."""


class ApiError(ClientError):
    """The API answered with an error: `status` is the HTTP status, `detail` its one-line
    explanation (the API's `detail` field)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class Unreachable(ApiError):
    """The server could not be reached or stayed unavailable (502, 503, 504) after the
    retries; `status` is 0 when no answer came at all."""


class DocumentError(ClientError, ValueError):
    """A YAML document that cannot be read: missing, too large, not UTF-8, not valid YAML."""
