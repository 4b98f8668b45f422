"""Re-run: a new run of a final run's job with the same parameters.

The new run is made like a trigger's (the job's current steps and controls, its parameters
checked against the job as it is now), with the old run's values and priority. A secret
parameter's value is stored encrypted: it is decrypted here only to be checked like any given
value, and the new run keeps the old run's ciphertext, so the value is never shown nor sent
anywhere but to the worker that runs it."""

from __future__ import annotations

from orchestra.domain.models import Run
from orchestra.errors import Conflict, InvalidInput, NotFound
from orchestra.services.keyring import Keyring, KeyringError
from orchestra.services.parameter_secrets import open_value
from orchestra.services.runs import RunService
from orchestra.storage import records
from orchestra.storage import runs as run_storage
from orchestra.storage.schema import job as job_table


def rerun_source(run: Run) -> dict[str, str]:
    return {"type": "rerun", "run": run.identifier}


async def rerun(runs: RunService, project: str, identifier: str) -> Run:
    """A new pending run of `identifier`'s job with its parameters (Conflict unless the run
    is final, or when the job no longer takes those parameters)."""
    async with runs.db.transaction() as conn:
        original = await run_storage.get_run(conn, identifier, project)
        if original is None:
            raise NotFound(f"no run {identifier!r} in project {project!r}")
        if not original.status.is_final:
            raise Conflict(f"only a final run can be re-run; this one is {original.status.value}")
        row = await records.fetch_one(
            conn, job_table, {"project": project, "identifier": original.job}
        )
        if row is None:
            raise Conflict(f"the job {original.job!r} of this run no longer exists")
        given = _given_values(runs.keyring, original)
        try:
            values, steps = await runs.pending_of_job(
                conn, row, given, rerun_source(original), original.priority
            )
        except InvalidInput as refused:
            raise Conflict(f"the job changed since this run: {refused}") from None
        sealed = set(values.get("secret_parameters") or ())
        parameters = dict(values["parameters"])
        for key in sealed & set(original.secret_parameters or ()):
            stored = original.parameters.get(key)
            if stored is not None and Keyring.is_encrypted(stored):
                parameters[key] = stored  # the same value: keep its ciphertext
        values["parameters"] = parameters
        run = await run_storage.insert_run(conn, values, steps)
    runs.events.publish("dispatch")
    return run


def _given_values(keyring: Keyring, original: Run) -> dict[str, str]:
    """The run's parameter values as given at its trigger (its secret ones decrypted)."""
    given = dict(original.parameters)
    for key in original.secret_parameters or ():
        value = given.get(key)
        if value is None:
            continue
        try:
            given[key] = open_value(keyring, value)
        except KeyringError:
            raise Conflict(
                f"the value of secret parameter {key!r} cannot be read any more "
                "(the instance key changed); trigger the job instead"
            ) from None
    return given
