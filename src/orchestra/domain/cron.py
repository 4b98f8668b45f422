"""Cron expressions: parsing, Jenkins' H, next due times in any time zone, and descriptions.

Five fields (minute hour day-of-month month day-of-week) with `*`, ranges `a-b`, steps `/n`,
lists `a,b`, names (JAN-DEC, SUN-SAT), and `H`, `H(a-b)`, `H/n`: a value derived from the
schedule's identity, stable across restarts, so that many `H * * * *` schedules spread over the
hour. Day of month and day of week combine as in Vixie cron: when both are restricted, a day
matching either one is due.

Daylight saving, as users expect: a wall-clock time that does not exist on the day the clocks
skip it fires once, shifted by the jump (02:30 becomes 03:30 when 02:00 jumps to 03:00); a time
that happens twice on the day the clocks repeat it fires once, the first time, unless the hour
field is `*`, in which case the schedule keeps firing through the repeated hour.

The parser (with H and its messages) and the descriptions are ours; cronsim finds the matching
wall-clock times, and `next_due` turns them into instants by the rules above.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from orchestra.errors import InvalidInput

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {n: i + 1 for i, n in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
DAYS = {n: i for i, n in enumerate("SUN MON TUE WED THU FRI SAT".split())}


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]

    @property
    def top(self) -> int:
        """The last value of `*` and H: 6 in the day of week, where 7 is Sunday again."""
        return 6 if self.high == 7 else self.high


FIELDS = (
    _FieldSpec("minute", 0, 59, {}),
    _FieldSpec("hour", 0, 23, {}),
    _FieldSpec("day of month", 1, 31, {}),
    _FieldSpec("month", 1, 12, MONTHS),
    _FieldSpec("day of week", 0, 7, DAYS),
)
DEFAULT_SEED = "orchestra"


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool
    search: str  # the same values as cronsim reads them: plain numbers, no H

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24


def parse(expression: str, seed: str = DEFAULT_SEED) -> Cron:
    """Parse an expression (or macro); InvalidInput says what is wrong. `seed` is the schedule's
    identity, from which `H` takes its values."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("expression must be a cron expression such as '0 3 * * *'")
    text = " ".join(expression.split())
    expanded = MACROS.get(text.lower(), text)
    if expanded.startswith("@"):
        raise InvalidInput(f"unknown macro {text!r} (macros: {', '.join(MACROS)})")
    parts = expanded.split(" ")
    if len(parts) != 5:
        raise InvalidInput(
            f"expression {text!r} has {len(parts)} fields; it needs five "
            "(minute hour day-of-month month day-of-week) or a macro such as @daily"
        )
    values = [
        _parse_field(part, spec, f"{seed}:{spec.name}")
        for part, spec in zip(parts, FIELDS, strict=True)
    ]
    values[4] = frozenset(0 if d == 7 else d for d in values[4])
    restricted = [not part.startswith("*") for part in parts]
    return Cron(
        expression=text,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=values[4],
        days_restricted=restricted[2],
        weekdays_restricted=restricted[4],
        search=" ".join(map(_for_cronsim, values, FIELDS, restricted)),
    )


def _for_cronsim(values: frozenset[int], spec: _FieldSpec, restricted: bool) -> str:
    """A field in cronsim's syntax, as short as it goes (cronsim parses it on every call).
    cronsim, like us, ORs the day of month and the day of week when neither starts with `*`:
    a field that does (`*`, `*/2`) keeps a leading `*`, `*/99` standing for its lowest value,
    which such a field always holds."""
    if restricted:
        return _ranges(values)
    return "*" if len(values) == spec.top - spec.low + 1 else f"*/99,{_ranges(values)}"


def _ranges(values: frozenset[int]) -> str:
    """`a-b` or `a-b/n` when the values allow, else a list of single values and runs `a-b`."""
    low, high = min(values), max(values)
    if high - low + 1 == len(values):
        return str(low) if low == high else f"{low}-{high}"
    ordered = sorted(values)
    step = ordered[1] - low
    if ordered == list(range(low, high + 1, step)):
        return f"{low}-{high}/{step}"
    runs: list[list[int]] = []
    for value in ordered:
        if runs and runs[-1][1] == value - 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _parse_field(text: str, spec: _FieldSpec, seed: str) -> frozenset[int]:
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise InvalidInput(f"{spec.name}: empty list item in {text!r}")
        result.update(_parse_item(item, spec, seed))
    return frozenset(result)


def _parse_item(item: str, spec: _FieldSpec, seed: str) -> range | list[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _is_number(step_text) or int(step_text) == 0:
            raise InvalidInput(f"{spec.name}: step must be a positive number in {item!r}")
        step = int(step_text)
    high = spec.top
    if base == "*":
        return range(spec.low, high + 1, step)
    if base == "H" or (base.startswith("H(") and base.endswith(")")):
        low, top = (spec.low, high) if base == "H" else _range(base[2:-1], spec, item)
        offset = _hash(seed) % min(step, top - low + 1) if slash else _hash(seed) % (top - low + 1)
        if slash:
            return range(low + offset, top + 1, step)
        return [low + offset]
    if "-" in base:
        low, top = _range(base, spec, item)
        return range(low, top + 1, step)
    value = _value(base, spec, item)
    if slash:  # `5/15`: from 5 to the end of the range, every 15
        return range(value, high + 1, step)
    return [value]


def _range(text: str, spec: _FieldSpec, item: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not dash:
        raise InvalidInput(f"{spec.name}: expected a range a-b in {item!r}")
    low, top = _value(first, spec, item), _value(last, spec, item)
    if low > top:
        raise InvalidInput(f"{spec.name}: range {text!r} runs backwards")
    return low, top


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts superscripts and other scripts' digits."""
    return text.isascii() and text.isdigit()


def _value(text: str, spec: _FieldSpec, item: str) -> int:
    upper = text.upper()
    if upper in spec.names:
        return spec.names[upper]
    if not _is_number(text):
        raise InvalidInput(f"{spec.name}: {text!r} is not a number or name in {item!r}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise InvalidInput(f"{spec.name}: {value} is outside {spec.low}-{spec.high}")
    return value


def _hash(seed: str) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")


# Due times.


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)"
        ) from None


# A change of the clocks this near `after` is looked at: the largest skipped a day (Samoa, 2011).
CLOCK_WINDOW = timedelta(hours=26)


def next_due(cron: Cron, after: datetime, zone: ZoneInfo) -> datetime | None:
    """The first due instant strictly after `after` (aware), in UTC; None if it never fires."""
    after_utc = after.astimezone(UTC)
    local = after_utc.astimezone(zone)
    offsets = [_offset(after_utc + d, zone) for d in (timedelta(0), -CLOCK_WINDOW, CLOCK_WINDOW)]
    lowest, highest = min(offsets), max(offsets)
    # Near a change of the clocks, a wall-clock time before `after`'s can still come after it
    # (a repeated hour; a skipped time moved past the jump): start earlier by the change.
    start = local.replace(tzinfo=None) - (offsets[0] - lowest)
    try:
        walls = CronSim(cron.search, start)  # naive wall-clock times after `start`, 50 years
    except CronSimError:  # a day of month that none of its months has, such as 30 February
        return None
    best: datetime | None = None
    for wall in walls:
        # There, the order of wall-clock times is not always the order of instants (01:10 the
        # first time comes before 01:00 the second time): go on while a later one can be earlier.
        if best is not None and wall - highest >= best.replace(tzinfo=None):
            break
        for instant in _instants(cron, wall, zone):
            if instant > after_utc and (best is None or instant < best):
                best = instant
        if best is not None and lowest == highest:
            break
    return best


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def due_times(cron: Cron, after: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    result: list[datetime] = []
    current = after
    while len(result) < count:
        due = next_due(cron, current, zone)
        if due is None:
            break
        result.append(due)
        current = due
    return result


def _instants(cron: Cron, wall: datetime, zone: ZoneInfo) -> list[datetime]:
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    first_utc = first.astimezone(UTC)
    if first_utc.astimezone(zone).replace(tzinfo=None) != wall:
        return [first_utc]  # skipped by the clocks: fires once, where the jump lands
    if first.utcoffset() == second.utcoffset():
        return [first_utc]
    repeated = [first_utc]
    if cron.every_hour:
        repeated.append(second.astimezone(UTC))
    return repeated


def check_fires(cron: Cron) -> None:
    """Refuse an expression that never fires, such as 30 February."""
    if next_due(cron, datetime(2000, 1, 1, tzinfo=UTC), ZoneInfo("UTC")) is None:
        raise InvalidInput(f"expression {cron.expression!r} never fires")


# Descriptions.

WEEKDAY_NAMES = "Sunday Monday Tuesday Wednesday Thursday Friday Saturday".split()
MONTH_NAMES = (
    "January February March April May June July August September October November December"
).split()


def describe(cron: Cron, zone_name: str = "UTC") -> str:
    """A short English description, such as "At 03:00, every day (UTC)"."""
    return f"{_describe_time(cron)}, {_describe_days(cron)} ({zone_name})"


def _describe_time(cron: Cron) -> str:
    minutes, hours = sorted(cron.minutes), sorted(cron.hours)
    if len(minutes) == 60 and len(hours) == 24:
        return "Every minute"
    step = _step(minutes, 60)
    if len(hours) == 24:
        if step and step > 1:
            return f"Every {step} minutes"
        if len(minutes) == 1:
            return "Every hour" if minutes[0] == 0 else f"At {minutes[0]} minutes past every hour"
        return f"At minutes {_join(minutes)} of every hour"
    if len(minutes) == 1 and len(hours) <= 6:
        return "At " + _join([f"{h:02d}:{minutes[0]:02d}" for h in hours])
    hour_text = "hours " + _join([f"{h:02d}" for h in hours])
    if len(minutes) == 60:
        return f"Every minute of {hour_text}"
    if step and step > 1:
        return f"Every {step} minutes of {hour_text}"
    return f"At minutes {_join(minutes)} of {hour_text}"


def _describe_days(cron: Cron) -> str:
    # A field written from `*` (such as `*/10`) still narrows the days; it only makes the two
    # day fields combine with AND instead of cron's OR.
    parts = []
    if len(cron.days) < 31:
        parts.append("on day " + _join(sorted(cron.days)) + " of the month")
    if len(cron.weekdays) < 7:
        parts.append("on " + _join([WEEKDAY_NAMES[d] for d in sorted(cron.weekdays)]))
    either = cron.days_restricted and cron.weekdays_restricted
    text = (" or " if either else " and ").join(parts) if parts else "every day"
    if len(cron.months) < 12:
        text += " in " + _join([MONTH_NAMES[m - 1] for m in sorted(cron.months)])
    return text


def _step(values: list[int], size: int) -> int | None:
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1] - values[0]
    expected = list(range(0, size, step))
    return step if values == expected else None


def _join(items: list[int] | list[str]) -> str:
    texts = [str(i) for i in items]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]
