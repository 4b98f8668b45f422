"""The services a master runs a run's life with, built once over one database.

The run's path through them: a worker registers (`registry`), runs are claimed for it
(`dispatching`), its reports are applied (`reports`), and runs nobody will finish are ended
(`leases`); `endings` puts back, gives up on or retries a run for all three. `run_secrets`
gives the dispatch what an assignment carries of secrets and the reports the values to mask.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestra.services.container import Services
from orchestra.services.control_queries import ControlQueries
from orchestra.services.dispatch import DispatchService
from orchestra.services.leases import Leases
from orchestra.services.report_applier import ReportApplier
from orchestra.services.retention import RetentionService
from orchestra.services.run_endings import RunEndings
from orchestra.services.run_secrets import RunSecrets
from orchestra.services.worker_registry import WorkerRegistry


@dataclass
class MasterSide:
    endings: RunEndings
    registry: WorkerRegistry
    dispatching: DispatchService
    reports: ReportApplier
    leases: Leases
    control: ControlQueries
    retention: RetentionService
    run_secrets: RunSecrets

    @classmethod
    def build(cls, services: Services, master: str) -> MasterSide:
        """`master`: this master's identity, recorded on the runs it claims and the workers
        connected to it."""
        db, clock, events = services.db, services.clock, services.events
        endings = RunEndings(clock, events, services.runs)
        run_secrets = RunSecrets(db, services.secrets, services.keyring)
        return cls(
            endings=endings,
            registry=WorkerRegistry(db, clock, events, endings, master),
            dispatching=DispatchService(db, clock, events, endings, master),
            reports=ReportApplier(db, clock, events, endings, run_secrets),
            leases=Leases(db, clock, events, endings),
            control=ControlQueries(db),
            retention=RetentionService(
                db, clock, services.settings.run_retention_days, services.artifacts
            ),
            run_secrets=run_secrets,
        )
