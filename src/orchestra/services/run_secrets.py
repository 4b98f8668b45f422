"""What a run needs of its project's secrets, on the master: the values its assignment carries
and the values masked in its log.

A run uses the secrets its steps' commands and its environment name (`{secrets[NAME]}`), and
its secret parameters' values (stored encrypted, decrypted only here). Finding the names is
pure (domain/commands.py): the secrets are read, one query, only for a run that names some.
The values to mask are kept per run while it runs: the dispatcher's `delivery` remembers them
as the assignment goes out, and the report applier masks the output of the runs that have
some. A master that did not dispatch a run (its worker reconnected here, or this master
restarted) reads them once, at the run's first output, then keeps them too.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from orchestra.domain.commands import secret_names
from orchestra.domain.masking import mask_values
from orchestra.domain.models import Run
from orchestra.errors import OrchestraError
from orchestra.services.keyring import Keyring
from orchestra.services.secrets import SecretService
from orchestra.storage import runs as run_storage
from orchestra.storage.engine import Database

log = logging.getLogger(__name__)
PARAMETER_CONTEXT = "parameter"  # the associated data of a secret parameter's ciphertext
KEPT_RUNS = 10_000  # runs whose mask values are kept at most (the least recent go first)


@dataclass(frozen=True)
class Delivery:
    """What an assignment carries of secrets, or why the run cannot be sent (`refused`)."""

    parameters: dict[str, str]
    secret_values: dict[str, str] | None = None
    masks: tuple[str, ...] = ()
    refused: str | None = None


def names_used(run: Run) -> set[str]:
    """The project secrets a run's steps and environment name."""
    templates = [element for step in run.steps for element in step.command]
    templates += (run.environment or {}).values()
    return secret_names(templates)


class RunSecrets:
    def __init__(self, db: Database, secrets: SecretService, keyring: Keyring) -> None:
        self.db = db
        self.secrets = secrets
        self.keyring = keyring
        # run -> the byte strings masked in its output (empty: none), while it runs.
        self._masks: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()

    async def delivery(self, run: Run) -> Delivery:
        """The run's parameters in clear, the secrets it names and every value to mask; a
        `refused` reason when a secret is missing or a value does not decrypt. Reads the
        database only when the run names secrets. The values to mask are kept either way."""
        try:
            parameters = self._parameters(run)
            names = names_used(run)
            values = await self.secrets.values(run.project, names) if names else {}
        except OrchestraError as exc:
            self._keep(run.identifier, ())
            return Delivery(run.parameters, refused=f"the run's secrets cannot be read: {exc}")
        masks = tuple(parameters[k] for k in run.secret_parameters or () if parameters.get(k))
        masks += tuple(values.values())
        self._keep(run.identifier, mask_values(masks))
        missing = sorted(names - values.keys())
        if missing:
            refused = f"secret {missing[0]} is not set in project {run.project}"
            return Delivery(run.parameters, masks=masks, refused=refused)
        return Delivery(parameters, values or None, masks)

    def _parameters(self, run: Run) -> dict[str, str]:
        if not run.secret_parameters:
            return run.parameters
        parameters = dict(run.parameters)
        for key in run.secret_parameters:
            value = parameters.get(key)
            if value is not None and Keyring.is_encrypted(value):
                parameters[key] = self.keyring.decrypt(value, PARAMETER_CONTEXT)
        return parameters

    async def masks_of(self, runs: Iterable[str]) -> dict[str, tuple[bytes, ...]]:
        """The values to mask in these runs' output (only the runs that have some): kept ones,
        or read for a run this master has none kept for."""
        found: dict[str, tuple[bytes, ...]] = {}
        for run_id in runs:
            masks = self._masks.get(run_id)
            if masks is None:
                masks = await self._load(run_id)
            else:
                self._masks.move_to_end(run_id)
            if masks:
                found[run_id] = masks
        return found

    def forget(self, run_id: str) -> None:
        """The run ended: its values are needed no more."""
        self._masks.pop(run_id, None)

    async def _load(self, run_id: str) -> tuple[bytes, ...]:
        async with self.db.read() as conn:
            run = await run_storage.get_run(conn, run_id)
        if run is None:
            self._keep(run_id, ())  # a report for no run is refused: read once, not each time
            return ()
        delivery = await self.delivery(run)  # keeps what it could read
        if delivery.refused is not None:
            log.warning(
                "run %s: %s; its output is masked with what could be read", run_id, delivery.refused
            )
        return self._masks.get(run_id, ())

    def _keep(self, run_id: str, masks: tuple[bytes, ...]) -> None:
        self._masks[run_id] = masks
        self._masks.move_to_end(run_id)
        while len(self._masks) > KEPT_RUNS:
            self._masks.popitem(last=False)
