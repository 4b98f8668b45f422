"""Re-encrypting every ciphertext of the database under the keyring's current key (a key
rotation: `orchestra admin rotate-key`), a batch of rows per transaction, then the check value.
A secret value still stored in clear (written before secrets were encrypted) is encrypted too.

Safe to run again after an interruption: a value already under the current key is left alone.
A value that no key of the ring decrypts is counted and left as it is (the old keys must then
be kept)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.clock import utcnow
from orchestra.services.key_check import CHECK_CONTEXT, CHECK_NAME, CHECK_TEXT
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.services.notifications import secret_context as notification_context
from orchestra.services.parameter_secrets import CONTEXT as PARAMETER_CONTEXT
from orchestra.services.secrets import secret_context
from orchestra.services.webhook_secrets import webhook_context
from orchestra.storage.engine import Database, sync_url
from orchestra.storage.schema import (
    instance_setting,
    job,
    notification,
    pipeline,
    project_secret,
    run,
    schedule,
)

BATCH = 500


@dataclass
class RotationReport:
    """How many values each table had re-encrypted, and those no key could read."""

    reencrypted: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)

    def count(self, table: str, changed: int, unreadable: int) -> None:
        self.reencrypted[table] = self.reencrypted.get(table, 0) + changed
        self.unreadable[table] = self.unreadable.get(table, 0) + unreadable

    @property
    def complete(self) -> bool:
        return not any(self.unreadable.values())


class _Sealer:
    """Re-encrypts one row's values, counting what it changed and what it could not read."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.changed = 0
        self.unreadable = 0

    def value(self, value: object, context: str) -> object:
        """`value` under the current key; one stored in clear (before secrets were encrypted:
        the caller knows it is secret) encrypted."""
        if not isinstance(value, str):
            return value
        if not Keyring.is_encrypted(value):
            self.changed += 1
            return self.keyring.encrypt(value, context)
        try:
            new = self.keyring.reencrypt(value, context)
        except KeyringError:
            self.unreadable += 1
            return value
        if new != value:
            self.changed += 1
        return new


def _secret_row(sealer: _Sealer, row: Mapping[str, Any]) -> dict[str, Any] | None:
    value = sealer.value(row["value"], secret_context(row["project"], row["name"]))
    return None if value == row["value"] else {"value": value}


def _job_row(sealer: _Sealer, row: Mapping[str, Any]) -> dict[str, Any] | None:
    parameters = [dict(p) for p in row["parameters"] or []]
    for parameter in parameters:
        if parameter.get("secret") and parameter.get("default") is not None:
            parameter["default"] = sealer.value(parameter["default"], PARAMETER_CONTEXT)
    return None if parameters == (row["parameters"] or []) else {"parameters": parameters}


def _values_row(sealer: _Sealer, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A run's or a schedule's values of secret parameters (a run's are named with it, a
    schedule's by its job)."""
    values = row["parameters"]
    if not isinstance(values, Mapping):
        return None
    if "secret_parameters" in row:
        secret = set(row["secret_parameters"] or ())
    else:
        declared = row["job_parameters"] if isinstance(row["job_parameters"], list) else []
        # Only the job's secret parameters: a value of another one that looks like ciphertext
        # is text someone wrote (it would otherwise count as unreadable and stop a rotation).
        secret = {p.get("key") for p in declared if isinstance(p, Mapping) and p.get("secret")}
    new = {k: sealer.value(v, PARAMETER_CONTEXT) if k in secret else v for k, v in values.items()}
    return None if new == values else {"parameters": new}


Rewrite = Callable[[_Sealer, Mapping[str, Any]], "dict[str, Any] | None"]


def _webhook_row(kind: str) -> Rewrite:
    """A job's or a pipeline's webhook secret (services/webhook_secrets.py)."""

    def rewrite(sealer: _Sealer, row: Mapping[str, Any]) -> dict[str, Any] | None:
        hook = row["webhook"]
        if not isinstance(hook, Mapping) or not isinstance(hook.get("secret"), str):
            return None
        context = webhook_context(row["project"], kind, row["identifier"])
        secret = sealer.value(hook["secret"], context)
        return None if secret == hook["secret"] else {"webhook": {**hook, "secret": secret}}

    return rewrite


def _notification_row(sealer: _Sealer, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A notification's secret (services/notifications.py)."""
    if not isinstance(row["secret"], str):
        return None
    secret = sealer.value(row["secret"], notification_context(row["project"], row["identifier"]))
    return None if secret == row["secret"] else {"secret": secret}


_SCHEDULE_JOB_PARAMETERS = (
    sa.select(job.c.parameters)
    .where(job.c.project == schedule.c.project, job.c.identifier == schedule.c.job)
    .scalar_subquery()
    .label("job_parameters")
)
# Each table: its key, what is read beside it, how a row is rewritten.
TABLES: list[tuple[sa.Table, tuple[str, ...], tuple[Any, ...], Rewrite]] = [
    (project_secret, ("project", "name"), (project_secret.c.value,), _secret_row),
    (job, ("project", "identifier"), (job.c.parameters,), _job_row),
    (
        schedule,
        ("project", "identifier"),
        (schedule.c.parameters, _SCHEDULE_JOB_PARAMETERS),
        _values_row,
    ),
    (run, ("identifier",), (run.c.parameters, run.c.secret_parameters), _values_row),
    (job, ("project", "identifier"), (job.c.webhook,), _webhook_row("job")),
    (pipeline, ("project", "identifier"), (pipeline.c.webhook,), _webhook_row("pipeline")),
    (notification, ("project", "identifier"), (notification.c.secret,), _notification_row),
]


async def _rotate_table(
    db: Database,
    keyring: Keyring,
    table: sa.Table,
    keys: tuple[str, ...],
    columns: tuple[Any, ...],
    rewrite: Rewrite,
    report: RotationReport,
) -> None:
    key_columns = [table.c[k] for k in keys]
    read = [*key_columns, *columns]
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*read).order_by(*key_columns).limit(BATCH)
        if after is not None:
            query = query.where(sa.tuple_(*key_columns) > sa.tuple_(*after))
        async with db.transaction() as conn:
            rows = list((await conn.execute(query)).mappings())
            sealer = _Sealer(keyring)
            for row in rows:
                changes = rewrite(sealer, dict(row))
                if changes is not None:
                    where = sa.and_(*(c == row[c.key] for c in key_columns))
                    await conn.execute(table.update().where(where).values(changes))
        report.count(table.name, sealer.changed, sealer.unreadable)
        if len(rows) < BATCH:
            return
        after = tuple(rows[-1][k] for k in keys)


async def _write_check(conn: AsyncConnection, keyring: Keyring) -> None:
    value = keyring.encrypt(CHECK_TEXT, CHECK_CONTEXT)
    updated = await conn.execute(
        instance_setting.update()
        .where(instance_setting.c.name == CHECK_NAME)
        .values(value=value, update_date=utcnow())
    )
    if not updated.rowcount:
        await conn.execute(
            instance_setting.insert().values(name=CHECK_NAME, value=value, update_date=utcnow())
        )


async def reencrypt_all(db: Database, keyring: Keyring) -> RotationReport:
    """Every ciphertext under `keyring`'s current key, then the check value. The report
    counts the values no key could read: while there are some, keep the old keys."""
    report = RotationReport()
    for table, keys, columns, rewrite in TABLES:
        await _rotate_table(db, keyring, table, keys, columns, rewrite, report)
    async with db.transaction() as conn:
        await _write_check(conn, keyring)
    return report


def compact_sqlite(url: str) -> bool:
    """On SQLite, rewrite the database file and empty its WAL, so that no free page or old
    frame keeps a value as it was before the rotation; False (nothing done) on PostgreSQL, whose
    old row versions `VACUUM FULL` removes (docs/security.md)."""
    if sa.engine.make_url(url).get_backend_name() != "sqlite":
        return False
    engine = sa.create_engine(sync_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return True
