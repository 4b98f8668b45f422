"""Health and apply."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from orchestra import __version__
from orchestra.web.api.schemas import ApplyChange, ApplyIn, ApplyOut, HealthOut
from orchestra.web.deps import CallerDep, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["system"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(services: ServicesDep) -> HealthOut | JSONResponse:
    try:
        async with services.db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:  # any database failure means "not healthy", never a 500
        body = HealthOut(status="unavailable", version=__version__, database="unreachable")
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(status="ok", version=__version__, database="ok")


@router.post("/apply", response_model=ApplyOut)
async def apply(body: ApplyIn, caller: CallerDep, services: ServicesDep) -> ApplyOut:
    changes = await services.apply.apply(body.model_dump(), caller.access)
    return ApplyOut(changes=[ApplyChange(**vars(c)) for c in changes])
