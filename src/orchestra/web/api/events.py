"""GET /events: the live event stream (server-sent events), CONTRACT.md section 8.

Every change to a run, pipeline run, worker or schedule the caller may read, as `id:` (the
change log's cursor), `event:` and `data:` (the object as the API shows it). `?project=P`
filters; `Last-Event-ID` (or `?after=ID`) resumes after that event, for as long as the change
log keeps it (two hours), else the stream begins with an event `reset`. A comment every
KEEP_ALIVE_SECONDS keeps proxies from closing a quiet stream.

Authentication: a token in the Authorization header, or the website's session cookie (for
EventSource, which cannot send a header; a GET that changes nothing, and no other site may
read the answer: no CORS). A token never goes in the URL. The caller's rights are checked again
every RECHECK_SECONDS: the stream ends once they are gone; events are filtered with their
rights as last checked.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from orchestra.domain.access import Access
from orchestra.domain.identifiers import check_identifier
from orchestra.errors import InvalidInput, NotFound, Unauthenticated
from orchestra.services.container import Services
from orchestra.web.api.projects import schedule_out
from orchestra.web.api.runs import run_fields
from orchestra.web.api.schemas import WorkerOut
from orchestra.web.auth import authenticate
from orchestra.web.event_hub import KEEP_ALIVE, RESET, Client, Encoder, Hub, frame
from orchestra.web.permissions import API

router = APIRouter(prefix=API, tags=["events"])
# A comment this often on a quiet stream (ORCHESTRA_EVENTS_KEEP_ALIVE: seconds, for tests).
KEEP_ALIVE_SECONDS = float(os.environ.get("ORCHESTRA_EVENTS_KEEP_ALIVE") or 15.0)
RECHECK_SECONDS = 15.0
RETRY_MILLISECONDS = 2000  # how long a browser waits before it reconnects

EVENTS_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "server-sent events: id, event (run.created, run.updated, "
        "pipeline_run.created, pipeline_run.updated, worker.updated, schedule.fired, reset), "
        "data (the object as the API shows it)",
    }
}


def hub_of(request: Request) -> Hub:
    state = request.app.state
    hub: Hub | None = getattr(state, "event_hub", None)
    if hub is None:
        encoder = Encoder(
            run=run_fields,
            worker=lambda w: WorkerOut.model_validate(w).model_dump(mode="json"),
            schedule=lambda s: schedule_out(s).model_dump(mode="json"),
        )
        hub = state.event_hub = Hub(request.app.state.services, encoder)
    return hub


async def _access(request: Request, services: Services) -> Access | None:
    caller = await authenticate(request, services.users, allow_cookie=True)
    return None if caller is None else caller.access


@router.get("/events", response_class=StreamingResponse, responses=EVENTS_RESPONSES)
async def events(
    request: Request,
    project: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="resume after this id")] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    services: Services = request.app.state.services
    access = await _access(request, services)
    if access is None:
        raise Unauthenticated()
    if project is not None:
        check_identifier(project, "project")
        if not access.sees(project):
            raise NotFound(f"no project {project!r}")
    resume = after
    reset = False
    if resume is None and last_event_id is not None and last_event_id.strip():
        try:
            resume = int(last_event_id.strip())
        except ValueError:
            reset = True
        else:
            if resume < 0:
                raise InvalidInput("Last-Event-ID must be a cursor given by this stream")
    hub = hub_of(request)
    client = Client(access, project)
    position = await hub.attach(client)
    try:
        if resume is not None and not await hub.known(resume):
            reset, resume = True, None
    except BaseException:
        hub.detach(client)
        raise
    stream = _stream(request, services, hub, client, position, resume, reset)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request,
    services: Services,
    hub: Hub,
    client: Client,
    position: int,
    resume: int | None,
    reset: bool,
) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\n\n" % RETRY_MILLISECONDS
        if reset:
            reason = {
                "reason": "the events after the given id are no longer kept, or it is "
                "unknown: read the objects again",
                "after": position,
            }
            yield frame(position, RESET, json.dumps(reason).encode())
        if resume is not None:
            client.after = resume
            missed, complete = await hub.catch_up(client, resume, position)
            for missed_frame in missed:
                yield missed_frame
            if not complete:
                return  # the client resumes from the last event it got
        recheck = time.monotonic() + RECHECK_SECONDS
        while True:
            timeout = max(0.0, min(KEEP_ALIVE_SECONDS, recheck - time.monotonic()))
            chunk: bytes | None = KEEP_ALIVE
            try:
                async with asyncio.timeout(timeout):
                    chunk = await client.queue.get()
            except TimeoutError:
                pass
            if chunk is None:
                return  # dropped: too slow
            if time.monotonic() >= recheck:
                access = await _access(request, services)
                if access is None:
                    return
                client.rights_changed(access)
                recheck = time.monotonic() + RECHECK_SECONDS
            yield chunk
    finally:
        hub.detach(client)
