"""How many items a page of a list holds: the API's `limit`, and what it is when not given."""

from __future__ import annotations

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
