"""The master's hot statements, executed on SQLite's own connection, below SQLAlchemy.

Through SQLAlchemy's asyncio layer a statement cost the server about 60 us of CPU (an execution
context, a greenlet hand-over per driver call, binding and result processing), where SQLite
itself takes a few: in W2 (bench/w2_throughput.py) the dispatch passes, report groups and
trigger groups ran some four statements a run, and SQLAlchemy's part of them was near half of
the master's CPU. Here a statement is still SQLAlchemy's (one definition, and the same SQL),
compiled once for SQLite, then executed by sqlite3 directly on the event loop's thread inside
the write transaction (`Database.transaction()`), whose lock is then held: nothing waits. Its
parameters go through their types' bind processors (dates as SQLAlchemy stores them) and its
rows through the result processors, so the values are those `conn.execute` would give.

On PostgreSQL, and for a statement this cannot take, `rows` and `execute` are `conn.execute`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.storage import sqlite_driver

_DIALECT = sqlite_dialects.dialect(paramstyle="named")


class _Compiled:
    """A statement's SQL for sqlite3 (named parameters), its constant parameters, and the
    processors of its parameters and result columns."""

    __slots__ = ("binders", "columns", "constants", "readers", "sql")

    def __init__(self, statement: Any, keys: tuple[str, ...] | None = None) -> None:
        # An INSERT's columns are those of its parameters (`keys`): the others keep their
        # server defaults, as with conn.execute.
        compiled = statement.compile(dialect=_DIALECT, column_keys=keys)
        self.sql: str = compiled.string
        self.constants: dict[str, Any] = {}
        self.binders: dict[str, Callable[[Any], Any]] = {}
        for name, value in compiled.params.items():
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            if bind.expanding:
                # `IN (list)`: one JSON array parameter, whatever the list's length (one SQL
                # text, where SQLAlchemy renders a parameter per item).
                self.sql = self.sql.replace(
                    f"__[POSTCOMPILE_{name}]", f"SELECT value FROM json_each(:{name})"
                )
                self.binders[name] = _as_json_array(processor)
                continue
            if processor is not None:
                self.binders[name] = processor
            if value is not None and not bind.required:
                self.constants[name] = processor(value) if processor is not None else value
        exported = getattr(statement, "exported_columns", None) or ()
        self.columns: tuple[str, ...] = tuple(column.key for column in exported)
        self.readers: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (position, reader)
            for position, column in enumerate(exported)
            if (reader := column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None))
            is not None
        )

    def bind(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        bound = dict(self.constants)
        binders = self.binders
        for name, value in parameters.items():
            binder = binders.get(name)
            # With None too, as SQLAlchemy does (a JSON column stores None as 'null').
            bound[name] = binder(value) if binder is not None else value
        return bound

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        values = list(row)
        for position, reader in self.readers:
            if values[position] is not None:
                values[position] = reader(values[position])
        return dict(zip(self.columns, values, strict=True))


def _as_json_array(processor: Callable[[Any], Any] | None) -> Callable[[Any], str]:
    def bind(values: Any) -> str:
        items = list(values)
        if processor is not None:
            items = [processor(item) if item is not None else None for item in items]
        return json.dumps(items)

    return bind


_COMPILED: dict[tuple[int, tuple[str, ...] | None], tuple[Any, _Compiled]] = {}
COMPILED_MAX = 512  # statements kept compiled (the hot ones are a few dozen)


def _compiled(statement: Any, keys: tuple[str, ...] | None = None) -> _Compiled:
    # By identity: the hot statements are module constants or cached per shape; the statement
    # is kept beside its compiled form so that its id cannot be reused while cached. Should a
    # caller build statements afresh, the cache starts over rather than grow.
    found = _COMPILED.get((id(statement), keys))
    if found is None:
        if len(_COMPILED) >= COMPILED_MAX:
            _COMPILED.clear()
        found = _COMPILED[(id(statement), keys)] = (statement, _Compiled(statement, keys))
    return found[1]


# Called with each statement executed here (SQLAlchemy's events do not see them): see `observing`.
_OBSERVERS: list[Callable[[str], None]] = []


@contextmanager
def observing(observer: Callable[[str], None]) -> Iterator[None]:
    """Have `observer` called with the SQL of each statement executed here meanwhile."""
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)


def _observed(sql: str) -> None:
    for observer in _OBSERVERS:
        observer(sql)


async def _connection(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The sqlite3 connection under a write transaction, its BEGIN sent, or None."""
    if conn.dialect.name != "sqlite" or not conn.in_transaction():
        return None
    # In a transaction the pooled connection is there: no await (and no greenlet) to reach it.
    pooled = conn.sync_connection.connection if conn.sync_connection is not None else None
    if pooled is None:
        return None
    return await sqlite_driver.holding_write_lock(pooled.dbapi_connection)


async def rows(
    conn: AsyncConnection, statement: Any, parameters: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The statement's rows, as `conn.execute(statement, parameters).mappings()` gives them
    (plain dicts): on SQLite's connection directly in a write transaction."""
    connection = await _connection(conn)
    if connection is None:
        result = await conn.execute(statement, dict(parameters or {}))
        return [dict(row) for row in result.mappings()]
    compiled = _compiled(statement)
    if not compiled.columns:
        raise TypeError("direct.rows needs a statement that names its columns (.columns())")
    bound = compiled.bind(parameters or {})
    _observed(compiled.sql)
    try:
        found = connection.execute(compiled.sql, bound).fetchall()
    except sqlite3.Error as error:
        raise _wrapped(compiled.sql, bound, error) from error
    return [compiled.read(row) for row in found]


async def execute(
    conn: AsyncConnection, statement: Any, parameters: Sequence[Mapping[str, Any]]
) -> None:
    """The statement once per parameter set (an executemany): on SQLite's connection directly
    in a write transaction."""
    if not parameters:
        return
    connection = await _connection(conn)
    if connection is None:
        await conn.execute(statement, [dict(p) for p in parameters])
        return
    keys = tuple(parameters[0]) if isinstance(statement, sa.Insert) else None
    compiled = _compiled(statement, keys)
    bound = [compiled.bind(p) for p in parameters]
    _observed(compiled.sql)
    try:
        connection.executemany(compiled.sql, bound)
    except sqlite3.Error as error:
        raise _wrapped(compiled.sql, bound, error) from error


def _wrapped(sql: str, parameters: Any, error: sqlite3.Error) -> sa.exc.DBAPIError:
    """The error as SQLAlchemy would have raised it (callers catch its classes)."""
    wrapped = sa.exc.DBAPIError.instance(sql, parameters, error, sqlite3.Error)
    assert isinstance(wrapped, sa.exc.DBAPIError)
    return wrapped
