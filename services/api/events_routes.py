"""Server-sent event streams of the event log, for integrations that don't speak NATS.

The SSE `id` is the JetStream sequence: a client that reconnects with
`Last-Event-ID` resumes right after the last event it saw, without gaps or
duplicates, because the stream itself is the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from nats.aio.msg import Msg
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, EventDecodeError, decode, endpoint_events, run_events

from .auth import event_visible
from .authz import PrincipalDep
from .deps import PlatformDep

router = APIRouter(prefix="/api/v1", tags=["events"])
KEEPALIVE_S = 15.0


def _wanted(event_type: str, subject: str, types: set[str], group: str | None) -> bool:
    if types and event_type not in types:
        return False
    if group is None:
        return True
    # callmeter.run.<run>.endpoint.<group>-<n>.<token>
    parts = subject.split(".")
    return len(parts) > 4 and parts[3] == "endpoint" and parts[4].rsplit("-", 1)[0] == group


async def sse(
    bus: Bus,
    subject: str,
    start_seq: int,
    types: set[str],
    group: str | None,
    follow: bool,
    request: Request,
    visible: Callable[[int, Any], Awaitable[bool]] | None = None,
) -> AsyncIterator[bytes]:
    """Yield SSE frames for every matching event after `start_seq` (that is `visible`)."""
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=10_000)
    last_at_start = await bus.last_seq(EVENTS.name)
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE)
    config.opt_start_seq = start_seq + 1
    sub = await bus.js.subscribe(
        subject,
        stream=EVENTS.name,
        ordered_consumer=True,
        config=config,
        cb=queue.put,
        pending_msgs_limit=100_000,
    )
    try:
        yield b"retry: 2000\n\n"
        while True:
            if await request.is_disconnected():
                return
            try:
                msg = await asyncio.wait_for(queue.get(), timeout=1 if not follow else KEEPALIVE_S)
            except TimeoutError:
                if not follow:
                    return  # caught up with what existed when the request came in
                yield b": keep-alive\n\n"
                continue
            seq = msg.metadata.sequence.stream
            try:
                event = decode(msg.data)
            except EventDecodeError:
                continue
            if _wanted(event.type, msg.subject, types, group) and (  # type: ignore[attr-defined]
                visible is None or await visible(seq, event)
            ):
                data = msg.data.decode()
                yield f"id: {seq}\nevent: {event.type}\ndata: {data}\n\n".encode()  # type: ignore[attr-defined]
            if not follow and seq >= last_at_start:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _start(last_event_id: str | None, since: int) -> int:
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id)
    return since


@router.get("/runs/{run_id}/events", response_class=StreamingResponse)
async def run_event_stream(
    run_id: str,
    request: Request,
    p: PlatformDep,
    type: str = Query(
        "", description="Comma-separated event types, e.g. EndpointFinished,RunCompleted"
    ),
    group: str | None = Query(None, description="Only events of this group's endpoints"),
    endpoint: str | None = Query(None, description="Only events of this endpoint"),
    follow: bool = Query(True, description="Keep the stream open for new events"),
    since: int = Query(0, ge=0, description="Start after this stream sequence"),
    last_event_id: str | None = Header(None),
) -> StreamingResponse:
    """The run's events as server-sent events; resumable with Last-Event-ID."""
    from . import service

    await service.get_run(p, run_id)  # 404 for an unknown run
    subject = endpoint_events(run_id, endpoint) if endpoint else run_events(run_id)
    types = {t for t in type.split(",") if t}
    frames = sse(p.bus, subject, _start(last_event_id, since), types, group, follow, request)
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.get("/events", response_class=StreamingResponse)
async def event_stream(
    request: Request,
    p: PlatformDep,
    who: PrincipalDep,
    type: str = Query("", description="Comma-separated event types"),
    follow: bool = Query(True),
    since: int | None = Query(None, ge=0, description="Start after this sequence (default: now)"),
    last_event_id: str | None = Header(None),
) -> StreamingResponse:
    """Every test and run event (of the API key's project only) as server-sent events."""
    start = since if since is not None else await p.bus.last_seq(EVENTS.name)
    types = {t for t in type.split(",") if t}
    visible = None if who.everything else functools.partial(event_visible, p, who)
    frames = sse(p.bus, ">", _start(last_event_id, start), types, None, follow, request, visible)
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


docs_router = APIRouter(tags=["events"])


@docs_router.get("/asyncapi")
async def asyncapi_document() -> dict[str, object]:
    """The AsyncAPI 3.0 document of the NATS subjects and event payloads."""
    from callmeter_events.asyncapi import document

    return document()


@router.get("/runs/{run_id}/webhooks")
async def webhook_deliveries(run_id: str, p: PlatformDep) -> dict[str, object]:
    """The webhook delivery log of a run: every attempt, its HTTP status or error."""
    from . import service
    from .webhooks import deliveries

    await service.get_run(p, run_id)
    return {"items": await service.query(p, deliveries, run_id)}
