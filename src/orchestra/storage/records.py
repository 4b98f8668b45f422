"""Generic row operations shared by the per-aggregate query modules.

Every function takes an open connection and never commits: services own transactions. The
storage layer keeps creation_date and update_date.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.domain.pages import BEFORE, DEFAULT_LIMIT, MAX_LIMIT, Listing
from orchestra.errors import Conflict, InvalidInput
from orchestra.storage import direct


def key_clause(table: sa.Table, keys: Mapping[str, Any]) -> sa.ColumnElement[bool]:
    return sa.and_(*(table.c[name] == value for name, value in keys.items()))


# Statements of the shapes used on every run (a row by its key, an update of some columns) are
# built once and executed with parameters. SQLAlchemy caches the compiled SQL either way, but
# building the expression again on each call cost more than running it on SQLite.
_STATEMENTS: dict[tuple[Any, ...], Any] = {}


def _key_params(keys: Mapping[str, Any]) -> dict[str, Any]:
    return {f"k_{name}": value for name, value in keys.items()}


def _bound_keys(table: sa.Table, names: Sequence[str]) -> sa.ColumnElement[bool]:
    return sa.and_(*(table.c[name] == sa.bindparam(f"k_{name}") for name in names))


def _select_by_key(table: sa.Table, names: tuple[str, ...], for_update: bool) -> Any:
    shape = ("select", table.name, names, for_update)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = sa.select(table).where(_bound_keys(table, names))
        if for_update:
            statement = statement.with_for_update()
        _STATEMENTS[shape] = statement
    return statement


async def update_where(
    conn: AsyncConnection,
    table: sa.Table,
    keys: Mapping[str, Any],
    values: Mapping[str, Any],
    guard: tuple[str, Sequence[Any]] | None = None,
) -> int:
    """UPDATE the row with these keys, setting `values`, only while column `guard[0]` is one of
    `guard[1]` (when given); the number of rows changed. The statement is built once per shape
    (table, key names, value names, guard column) and run with parameters."""
    shape = ("update", table.name, tuple(keys), tuple(values), guard[0] if guard else None)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        clause = _bound_keys(table, tuple(keys))
        if guard is not None:
            clause = sa.and_(clause, table.c[guard[0]].in_(sa.bindparam("g", expanding=True)))
        statement = _STATEMENTS[shape] = (
            table.update()
            .where(clause)
            .values({name: sa.bindparam(f"v_{name}") for name in values})
        )
    parameters = _key_params(keys) | {f"v_{name}": value for name, value in values.items()}
    if guard is not None:
        parameters["g"] = list(guard[1])
    result = await conn.execute(statement, parameters)
    return int(result.rowcount)


async def update_many(
    conn: AsyncConnection,
    table: sa.Table,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    guard: tuple[str, Sequence[Any]] | None = None,
) -> None:
    """The same UPDATE for many rows, as one executemany: each of `rows` maps the key columns
    `keys` and the columns to set (the same names in every row) to values; a row is changed
    only while column `guard[0]` is one of `guard[1]` (when given)."""
    if not rows:
        return
    values = tuple(name for name in rows[0] if name not in keys)
    guarded = guard[0] if guard else None
    allowed = tuple(guard[1]) if guard else ()
    shape = ("update_many", table.name, tuple(keys), values, guarded, len(allowed))
    statement = _STATEMENTS.get(shape)
    if statement is None:
        clause = _bound_keys(table, tuple(keys))
        if guarded is not None:
            # One parameter per allowed value (an executemany takes no lists).
            accepted = [table.c[guarded] == sa.bindparam(f"g_{n}") for n in range(len(allowed))]
            clause = sa.and_(clause, sa.or_(*accepted))
        statement = _STATEMENTS[shape] = (
            table.update()
            .where(clause)
            .values({name: sa.bindparam(f"v_{name}") for name in values})
        )
    fixed = {f"g_{n}": value for n, value in enumerate(allowed)}
    parameters = [
        {**fixed, **{(f"k_{n}" if n in keys else f"v_{n}"): v for n, v in row.items()}}
        for row in rows
    ]
    await direct.execute(conn, statement, parameters)


async def insert(conn: AsyncConnection, table: sa.Table, values: Mapping[str, Any]) -> None:
    """Insert one row with fresh creation and update dates; a taken key is a Conflict."""
    now = utcnow()
    row = dict(values)
    for name in ("creation_date", "update_date"):
        if name in table.c:
            row.setdefault(name, now)
    try:
        async with conn.begin_nested():
            await conn.execute(table.insert().values(row))
    except IntegrityError as exc:
        raise Conflict(f"{table.name} already exists or refers to something missing") from exc


async def fetch_one(
    conn: AsyncConnection, table: sa.Table, keys: Mapping[str, Any], *, for_update: bool = False
) -> Mapping[str, Any] | None:
    lock = for_update and conn.dialect.name == "postgresql"
    query = _select_by_key(table, tuple(keys), lock)
    found = await direct.rows(conn, query, _key_params(keys))
    return found[0] if found else None


async def update(
    conn: AsyncConnection,
    table: sa.Table,
    keys: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    where: sa.ColumnElement[bool] | None = None,
) -> int:
    """Update the row with these keys (and `where`, a guard); returns the number of rows."""
    row = dict(values)
    if "update_date" in table.c:
        row.setdefault("update_date", utcnow())
    if where is None:
        return await update_where(conn, table, keys, row)
    else:
        clause = sa.and_(key_clause(table, keys), where)
        result = await conn.execute(table.update().where(clause).values(row))
    return int(result.rowcount)


async def delete(conn: AsyncConnection, table: sa.Table, keys: Mapping[str, Any]) -> int:
    result = await conn.execute(table.delete().where(key_clause(table, keys)))
    return int(result.rowcount)


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> list[Any]:
    """Decode a cursor made by encode_cursor, checking each value's type; InvalidInput if not."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError
        result: list[Any] = []
        for value, kind in zip(values, types, strict=True):
            if kind is datetime:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError
                # Normalised here, so a date that overflows in UTC is a bad cursor, not a 500.
                result.append(parsed.astimezone(UTC))
            elif not isinstance(value, kind) or (
                kind is int and (type(value) is not int or not -(2**63) <= value < 2**63)
            ):
                raise ValueError
            else:
                result.append(value)
        return result
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("invalid cursor") from None


async def page(
    conn: AsyncConnection,
    query: sa.Select[Any],
    order: Sequence[sa.ColumnElement[Any]],
    cursor: str | None,
    limit: int | None,
    *,
    descending: bool = False,
    types: Sequence[type] = (str,),
) -> Listing[sa.RowMapping]:
    """A keyset page: rows strictly after the cursor in `order`, never an OFFSET scan; with a
    backward cursor (BEFORE and a position), the rows just before that position, in the same
    order. It unpacks as `(rows, next_cursor)`; its `previous_cursor` leads back."""
    size = check_limit(limit)
    backward = cursor is not None and cursor.startswith(BEFORE)
    # Backwards, the rows just before the position are read in the opposite order.
    reverse = descending != backward
    ordered = query
    if cursor:
        position = decode_cursor(cursor[len(BEFORE) :] if backward else cursor, types)
        bound = sa.tuple_(*order)
        values = sa.tuple_(
            *(sa.literal(v, type_=c.type) for v, c in zip(position, order, strict=True))
        )
        ordered = query.where(bound < values if reverse else bound > values)
    ordered = ordered.order_by(*(c.desc() if reverse else c.asc() for c in order))
    rows = list((await conn.execute(ordered.limit(size + 1))).mappings())
    more = len(rows) > size
    rows = rows[:size]
    if backward and not more:
        # Back at the start of the list: the first page itself, full, as a reader expects.
        return await page(conn, query, order, None, limit, descending=descending, types=types)
    if backward:
        rows.reverse()
    keys = [[row[c.key] for c in order] for row in (rows[0], rows[-1])] if rows else []
    if backward:
        return Listing(rows, encode_cursor(keys[1]), BEFORE + encode_cursor(keys[0]))
    next_cursor = encode_cursor(keys[1]) if more else None
    previous = None
    if cursor:  # rows before this page: at least the one its cursor names, unless deleted since
        previous = BEFORE + (encode_cursor(keys[0]) if keys else cursor)
    return Listing(rows, next_cursor, previous)


async def page_newest(
    conn: AsyncConnection,
    table: sa.Table,
    filters: Mapping[str, Any],
    cursor: str | None,
    limit: int | None,
) -> Listing[sa.RowMapping]:
    """A page of `table`'s rows newest first (by creation_date, then identifier), filtered by
    equality on the columns `filters` names (a None value: no filter)."""
    query = sa.select(table)
    for name, value in filters.items():
        if value is not None:
            query = query.where(table.c[name] == value)
    return await page(
        conn,
        query,
        [table.c.creation_date, table.c.identifier],
        cursor,
        limit,
        descending=True,
        types=(datetime, str),
    )
