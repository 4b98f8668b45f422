"""/audit: who changed what (auditors and administrators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from orchestra.web.api.schemas import AuditEventOut, Page
from orchestra.web.deps import Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["audit"])


@router.get("/audit", response_model=Page[AuditEventOut])
async def list_audit_events(
    services: ServicesDep,
    actor: Annotated[str | None, Query(max_length=100, description="only this user's")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[AuditEventOut]:
    events, _ = found = await services.audit.list_events(actor=actor, cursor=cursor, limit=limit)
    return Page(items=[AuditEventOut.model_validate(e) for e in events], **found.cursors())
