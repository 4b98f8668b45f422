"""Pages of lists: how many items a page holds (the API's `limit`, and what it is when not
given), the mark of a cursor that pages backwards, and a page with its cursors both ways."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

# A cursor that starts with this mark pages backwards: the items just before (newer than, in a
# newest-first list) the position it holds, in the list's own order. The mark is outside the
# alphabet of the cursors themselves (URL-safe base64), so no forward cursor starts with it.
BEFORE = "~"


class Listing(tuple[list[T], str | None]):
    """A page of a list: unpacks as `(items, next_cursor)` like every page did, and also knows
    `previous_cursor`, the cursor of the page before it (None on the first page)."""

    previous_cursor: str | None

    def __new__(
        cls, items: list[T], next_cursor: str | None, previous_cursor: str | None = None
    ) -> Listing[T]:
        made = super().__new__(cls, (items, next_cursor))
        made.previous_cursor = previous_cursor
        return made

    @property
    def items(self) -> list[T]:
        return self[0]

    @property
    def next_cursor(self) -> str | None:
        return self[1]

    def cursors(self) -> dict[str, str | None]:
        """The page's cursors, as the API answers them."""
        return {"next_cursor": self[1], "previous_cursor": self.previous_cursor}

    def map(self, convert: Callable[[T], U]) -> Listing[U]:
        """The same page with each item converted."""
        return Listing([convert(item) for item in self[0]], self[1], self.previous_cursor)
