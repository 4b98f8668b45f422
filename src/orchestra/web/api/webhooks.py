"""POST /webhooks/{project}/jobs/{job} and /webhooks/{project}/pipelines/{pipeline}: signed
deliveries that start runs (docs/events.md, "Webhooks in").

No user: a delivery is authenticated by its signature alone, so these routes are mounted
without the API's authentication (web/app.py), and the permission table calls them public.
In order: a body over MAX_BODY is refused (413) before it is read; a target without a webhook
is 404 (the same answer for an unknown project, job or pipeline); a missing or wrong signature,
or a timestamp outside the window, is 401; then the body must be JSON (422); a filter that does
not hold answers 202 and starts nothing; else 201 with the run started, or 200 with the run a
delivery with the same identifier started before.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orchestra.domain.webhooks import failed_filter, parameters_from
from orchestra.errors import InvalidInput, PayloadTooLarge, Unauthenticated
from orchestra.services.container import Services
from orchestra.services.webhook_signatures import delivery_of, verify
from orchestra.services.webhooks import Delivery, Target, WebhookChanged, check_delivery_id
from orchestra.web.deps import ServicesDep
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["webhooks"])

MAX_BODY = 1024 * 1024
JOB_ROUTE = f"{API}/webhooks/{{project}}/jobs/{{job}}"
PIPELINE_ROUTE = f"{API}/webhooks/{{project}}/pipelines/{{pipeline}}"
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "a delivery seen before: nothing new, the run it started then"},
    202: {"description": "a filter does not hold: no run"},
}


@router.post("/webhooks/{project}/jobs/{job}", status_code=201, responses=ANSWERS)
async def job_webhook(project: str, job: str, request: Request, services: ServicesDep) -> Any:
    """Start a run of the job from a signed delivery: `{"run": ID}`."""
    return await _receive(request, services, project, "job", job, JOB_ROUTE)


@router.post("/webhooks/{project}/pipelines/{pipeline}", status_code=201, responses=ANSWERS)
async def pipeline_webhook(
    project: str, pipeline: str, request: Request, services: ServicesDep
) -> Any:
    """Start a run of the pipeline from a signed delivery: `{"pipeline_run": ID}`."""
    return await _receive(request, services, project, "pipeline", pipeline, PIPELINE_ROUTE)


async def _receive(
    request: Request, services: Services, project: str, kind: str, identifier: str, route: str
) -> JSONResponse:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise PayloadTooLarge(f"a webhook delivery's body is at most {MAX_BODY} bytes")
    target = await services.webhooks.target(project, kind, identifier)
    body = await _body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        answer = await _accept(request, services, target, headers, body, route)
        if answer.status_code != 202 or not target.cached:
            return answer
    except (Unauthenticated, WebhookChanged):
        if not target.cached:
            raise
    # Refused, or filtered out, by a webhook read a few seconds ago: once more against the
    # stored one (a run is created only after its transaction finds the webhook unchanged).
    target = await services.webhooks.target(project, kind, identifier, fresh=True)
    return await _accept(request, services, target, headers, body, route)


async def _accept(
    request: Request,
    services: Services,
    target: Target,
    headers: dict[str, str],
    body: bytes,
    route: str,
) -> JSONResponse:
    verify(target.signature, target.secret, headers, body)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput("a webhook delivery's body must be JSON") from None
    said = delivery_of(
        target.signature, headers, payload.get("type") if isinstance(payload, dict) else None
    )
    delivery_id = check_delivery_id(said.identifier)
    field = "run" if target.kind == "job" else "pipeline_run"
    failed = failed_filter(target.filter, payload)
    if failed is not None:
        detail = f"no run: the filter on {failed!r} does not hold"
        return JSONResponse({field: None, "detail": detail}, status_code=202)
    client = request.client
    started = await services.webhooks.start(
        Delivery(
            project=target.project,
            kind=target.kind,
            target=target.identifier,
            delivery=delivery_id,
            event=said.event,
            parameters=parameters_from(target.parameters, payload),
            route=route,
            path=request.url.path,
            address=client.host if client else None,
            webhook=target.stored,
        )
    )
    return JSONResponse({field: started.identifier}, status_code=201 if started.created else 200)


async def _body(request: Request) -> bytes:
    """The body, refused (413) as soon as it grows past MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"a webhook delivery's body is at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
