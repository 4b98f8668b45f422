"""A run's log as lines: timestamps put before them, lines searched, lines numbered.

The stored log is the bytes a run's steps wrote, in chunks each with the time the worker read it
(storage/log_times.py). These functions work on such chunks as they come, without holding the
whole log: a line's time is that of the chunk its first byte is in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestra.domain import ansi

TimedChunk = tuple[int, bytes, datetime | None]  # offset, bytes, when the worker read them
MAX_LINE_BYTES = 64 << 10  # of a longer line, only the start is kept to search or show
UNKNOWN_TIME = "-".ljust(24)  # a chunk stored before chunks had times


def stamp(date: datetime | None) -> str:
    """A line's time as the log shows it: ISO 8601 in UTC to the millisecond, 24 characters."""
    if date is None:
        return UNKNOWN_TIME
    return date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{date.microsecond // 1000:03d}Z"


@dataclass
class Timestamper:
    """Puts `stamp(time) + " "` before every line of a stream of chunks, and nothing else:
    without the prefixes, the output is the log byte for byte."""

    at_line_start: bool = True

    def feed(self, data: bytes, date: datetime | None) -> bytes:
        if not data:
            return b""
        prefix = (stamp(date) + " ").encode()
        pieces = data.split(b"\n")
        out = bytearray()
        for position, piece in enumerate(pieces):
            last = position == len(pieces) - 1
            if last and not piece:
                break  # the chunk ended a line: the next one starts in a later chunk
            if self.at_line_start:
                out += prefix
            out += piece
            if not last:
                out += b"\n"
            self.at_line_start = not last
        if data.endswith(b"\n"):
            self.at_line_start = True
        return bytes(out)


@dataclass
class Line:
    """One line of a log: its number (from 1), the time of its first byte, its bytes without
    the newline (at most MAX_LINE_BYTES of them), and whether it ended with one."""

    number: int
    date: datetime | None
    data: bytes
    complete: bool = True

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")


@dataclass
class LineSplitter:
    """Cuts chunks into lines as they come; `rest()` is the last line if it has no newline."""

    number: int = 0  # the number of the last line given out
    consumed: int = 0  # bytes given out as whole lines
    _partial: bytearray = field(default_factory=bytearray)
    _partial_size: int = 0
    _date: datetime | None = None

    def feed(self, data: bytes, date: datetime | None) -> Iterator[Line]:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._partial_size or self._partial:
                self._keep(data[start:end])
                line = Line(self.number + 1, self._date, bytes(self._partial))
                size = self._partial_size + end - start + 1
                self._partial.clear()
                self._partial_size = 0
            else:
                line = Line(self.number + 1, date, data[start : min(end, start + MAX_LINE_BYTES)])
                size = end - start + 1
            self.number += 1
            self.consumed += size
            yield line
            start = end + 1
        if start < len(data):
            if not self._partial_size:
                self._date = date
            self._keep(data[start:])

    def rest(self) -> Line | None:
        if not self._partial_size:
            return None
        self.number += 1
        self.consumed += self._partial_size
        line = Line(self.number, self._date, bytes(self._partial), complete=False)
        self._partial.clear()
        self._partial_size = 0
        return line

    def _keep(self, piece: bytes) -> None:
        room = MAX_LINE_BYTES - len(self._partial)
        if room > 0:
            self._partial += piece[:room]
        self._partial_size += len(piece)


def matches(line: Line, needle: str) -> bool:
    """Whether a line's text, escape sequences dropped, holds `needle` (ignoring case)."""
    return needle.casefold() in ansi.plain(line.text).casefold()


def grep_line(line: Line) -> bytes:
    """A line found by a search as the API gives it: `NUMBER:TEXT`, escape sequences dropped,
    as `grep -n` prints it."""
    return f"{line.number}:{ansi.plain(line.text)}\n".encode()
