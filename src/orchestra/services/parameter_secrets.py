"""Secret parameters at rest: a secret parameter's `default` (in job.parameters), the values given
for secret parameters at trigger (run.parameters) and a schedule's values for them
(schedule.parameters) are stored encrypted with the instance key (context "parameter"), and shown
as "***". A write that sends "***" keeps the stored value; a value equal to the stored one keeps
its ciphertext, so applying the same document twice changes nothing.

Only the master decrypts a run's copy, where it is sent to the worker (master/dispatcher.py), and
a schedule's, to trigger from it (services/scheduler.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestra.domain.models import Job, Schedule
from orchestra.domain.parameters import Parameter
from orchestra.errors import InvalidInput
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.storage.schema import job as job_table

CONTEXT = "parameter"
MASK = "***"


def seal(keyring: Keyring, given: str, stored: object, where: str) -> str:
    """The ciphertext to store for `given`, a value of a secret parameter whose stored value
    (ciphertext, or None) is `stored`."""
    if isinstance(stored, str) and Keyring.is_encrypted(stored):
        if given in (MASK, stored):
            return stored
        try:
            if keyring.decrypt(stored, CONTEXT) == given:
                return stored
        except KeyringError:
            pass  # not readable any more: replaced by the value given
    elif given == MASK:
        raise InvalidInput(f'{where}: "{MASK}" keeps the stored value, but none is stored')
    return keyring.encrypt(given, CONTEXT)


def open_value(keyring: Keyring, value: str) -> str:
    return keyring.decrypt(value, CONTEXT) if Keyring.is_encrypted(value) else value


# Jobs: a secret parameter's default.


def seal_job_parameters(
    keyring: Keyring, parameters: Sequence[Mapping[str, Any]], stored: object
) -> list[dict[str, Any]]:
    """A job's parameters (as parsed, to be stored) with secret defaults encrypted; `stored` is
    the job's stored `parameters` column (None for a new job)."""
    before = {
        p.get("key"): p.get("default")
        for p in (stored if isinstance(stored, list) else [])
        if isinstance(p, Mapping) and p.get("secret")
    }
    sealed = []
    for parameter in parameters:
        item = dict(parameter)
        if item.get("secret") and item.get("default") is not None:
            where = f"parameter {item['key']!r}"
            item["default"] = seal(keyring, item["default"], before.get(item["key"]), where)
        sealed.append(item)
    return sealed


def shown_parameter(parameter: Parameter) -> Parameter:
    if parameter.secret and parameter.default is not None:
        return replace(parameter, default=MASK)
    return parameter


def shown_job(job: Job) -> Job:
    """The job as people may see it: secret defaults masked."""
    if not any(p.secret and p.default is not None for p in job.parameters):
        return job
    return replace(job, parameters=[shown_parameter(p) for p in job.parameters])


# Schedules: their values for the job's secret parameters.


def secret_keys(job_parameters: Iterable[Parameter]) -> set[str]:
    return {p.key for p in job_parameters if p.secret}


def seal_schedule_values(
    keyring: Keyring, values: Mapping[str, Any], secret: set[str], stored: object
) -> dict[str, Any]:
    """A schedule's parameter values with those of secret parameters encrypted; `stored` is
    the schedule's stored `parameters` (None for a new one)."""
    before = stored if isinstance(stored, Mapping) else {}
    sealed = dict(values)
    for key, value in values.items():
        if key in secret and isinstance(value, str):
            sealed[key] = seal(keyring, value, before.get(key), f"parameter {key!r}")
    return sealed


def shown_schedule(schedule: Schedule) -> Schedule:
    """The schedule as people may see it: encrypted values masked."""
    values = schedule.parameters or {}
    if not any(Keyring.is_encrypted(v) for v in values.values()):
        return schedule
    shown = {k: (MASK if Keyring.is_encrypted(v) else v) for k, v in values.items()}
    return replace(schedule, parameters=shown)


def secret_keys_of(job_parameters: object) -> frozenset[str]:
    """The keys of the secret parameters in a job's stored `parameters` column."""
    if not isinstance(job_parameters, list):
        return frozenset()
    return frozenset(p["key"] for p in job_parameters if isinstance(p, Mapping) and p.get("secret"))


async def job_secret_keys(conn: AsyncConnection, project: str, job: str) -> frozenset[str]:
    """The keys of the secret parameters of a stored job (none if there is no such job)."""
    declared = await conn.scalar(
        sa.select(job_table.c.parameters).where(
            job_table.c.project == project, job_table.c.identifier == job
        )
    )
    return secret_keys_of(declared)


def opened_schedule_values(
    keyring: Keyring, values: object, secret: Collection[str] = frozenset()
) -> object:
    """A schedule's stored values as given, those of its job's `secret` parameters decrypted,
    for a trigger that encrypts them again; a value that does not decrypt is passed on as it
    is. Only the job's secret parameters are opened: a value of another parameter that looks
    like ciphertext (copied from elsewhere) stays the text it is, never a way to decrypt."""
    if not isinstance(values, Mapping):
        return values
    opened = dict(values)
    for key, value in values.items():
        if key in secret and Keyring.is_encrypted(value):
            try:
                opened[key] = keyring.decrypt(value, CONTEXT)
            except KeyringError:
                pass
    return opened


# Runs: the values a run gets.


def seal_run_values(
    keyring: Keyring, declared: Sequence[Parameter], given: object, values: Mapping[str, str]
) -> dict[str, str]:
    """A run's resolved parameter values with those of secret parameters encrypted: a value given
    at trigger always (even one that looks like ciphertext), a default only if it is not already
    (a job stored before defaults were encrypted)."""
    given_keys = set(given) if isinstance(given, Mapping) else set()
    sealed = dict(values)
    for parameter in declared:
        value = values.get(parameter.key)
        if not parameter.secret or value is None:
            continue
        if parameter.key in given_keys or not Keyring.is_encrypted(value):
            sealed[parameter.key] = keyring.encrypt(value, CONTEXT)
    return sealed
