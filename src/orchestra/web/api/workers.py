"""/workers: list, show, enable, disable, approve, rename, disconnect and delete workers."""

from __future__ import annotations

from fastapi import APIRouter, Response

from orchestra.domain.permissions import Action
from orchestra.errors import Forbidden
from orchestra.web.api.schemas import Page, WorkerOut, WorkerPatch
from orchestra.web.deps import CallerDep, Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["workers"])


@router.get("/workers", response_model=Page[WorkerOut])
async def list_workers(
    services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[WorkerOut]:
    workers, _ = found = await services.workers.list_workers(cursor, limit)
    return Page(items=[WorkerOut.model_validate(w) for w in workers], **found.cursors())


@router.get("/workers/{worker}", response_model=WorkerOut)
async def get_worker(worker: str, services: ServicesDep) -> WorkerOut:
    return WorkerOut.model_validate(await services.workers.get_worker(worker))


@router.patch("/workers/{worker}", response_model=WorkerOut)
async def update_worker(
    worker: str, body: WorkerPatch, services: ServicesDep, caller: CallerDep
) -> WorkerOut:
    changes = body.changes()
    # The route needs worker.write (operators); approving needs more.
    if "is_approved" in changes and not caller.access.may(Action.WORKER_APPROVE):
        raise Forbidden(f"this needs the permission {Action.WORKER_APPROVE.value}")
    return WorkerOut.model_validate(await services.workers.update_worker(worker, changes))


@router.post("/workers/{worker}/disconnect", response_model=WorkerOut)
async def disconnect(worker: str, services: ServicesDep) -> WorkerOut:
    return WorkerOut.model_validate(await services.workers.disconnect(worker))


@router.delete("/workers/{worker}", status_code=204)
async def delete_worker(worker: str, services: ServicesDep) -> Response:
    await services.workers.delete_worker(worker)
    return Response(status_code=204)
