"""/projects/{project}/secrets: names and dates listed, values set and deleted, never shown."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from orchestra.web.api.schemas import Body, Page
from orchestra.web.deps import Cursor, Limit, ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["secrets"])


class SecretIn(Body):
    value: str


class SecretOut(BaseModel):
    project: str
    name: str
    creation_date: datetime
    update_date: datetime


@router.get("/projects/{project}/secrets", response_model=Page[SecretOut])
async def list_secrets(
    project: str, services: ServicesDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[SecretOut]:
    items, _ = found = await services.secrets.list_secrets(project, cursor, limit)
    return Page(items=[SecretOut(**s.to_dict()) for s in items], **found.cursors())


@router.put("/projects/{project}/secrets/{name}", response_model=SecretOut)
async def put_secret(
    project: str, name: str, body: SecretIn, services: ServicesDep, response: Response
) -> SecretOut:
    secret, created = await services.secrets.put_secret(project, name, body.value)
    response.status_code = 201 if created else 200
    return SecretOut(**secret.to_dict())


@router.delete("/projects/{project}/secrets/{name}", status_code=204)
async def delete_secret(project: str, name: str, services: ServicesDep) -> Response:
    await services.secrets.delete_secret(project, name)
    return Response(status_code=204)
