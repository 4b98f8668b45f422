"""Durations as users write them: seconds, or a number with s, m, h or d."""

from __future__ import annotations

import re
from datetime import timedelta

from orchestra.errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise InvalidInput(f"not a duration (seconds, or a number with s, m, h or d): {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0 or seconds > 100 * 365 * 86400:
        raise InvalidInput(f"duration out of range: {text!r}")
    return timedelta(seconds=seconds)
