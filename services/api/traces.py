"""An endpoint's history: lifecycle events from JetStream, SIP messages from PostgreSQL.

The read models keep only the latest state of an endpoint; its lifecycle events
stay in CALLMETER_EVENTS (kept until the run is deleted) and its SIP messages in
the sip_messages table (written by metrics-ingest; CALLMETER_TRACES is only a
buffer), so the ladder exists as long as the run's samples do. One ephemeral,
filtered, no-ack consumer per read collects the events there now and stops: the
number of matching messages is known when the consumer is created.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
import psycopg
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, EventDecodeError, SipMessage, decode, endpoint_events
from callmeter_storage import traces

MAX_MESSAGES = 5_000  # an endpoint's life is dozens of messages; bound a pathological one


async def read_subject(bus: Bus, stream: str, subject: str, timeout: float = 5.0) -> list[Any]:
    """Every decodable event on `subject` in `stream`, in stream order (a snapshot)."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.ALL,
        inactive_threshold=30.0,  # the server removes it if we vanish mid-read
        mem_storage=True,
    )
    sub = await bus.js.pull_subscribe(subject, stream=stream, config=config)
    out: list[Any] = []
    try:
        pending = (await sub.consumer_info()).num_pending
        pending = min(pending, MAX_MESSAGES)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pending > 0 and loop.time() < deadline:
            try:
                msgs = await sub.fetch(min(pending, 256), timeout=max(0.1, deadline - loop.time()))
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for msg in msgs:
                pending = min(pending - 1, msg.metadata.num_pending)
                with contextlib.suppress(EventDecodeError):
                    out.append(decode(msg.data))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


def _messages(database_url: str, run_id: str, endpoint_id: str) -> list[SipMessage]:
    with psycopg.connect(database_url) as conn:
        return traces.read(conn, run_id, endpoint_id)


async def endpoint_history(
    bus: Bus, database_url: str, run_id: str, endpoint_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(lifecycle events, SIP messages) of one endpoint, as JSON-ready dicts."""
    events, messages = await asyncio.gather(
        read_subject(bus, EVENTS.name, endpoint_events(run_id, endpoint_id)),
        asyncio.to_thread(_messages, database_url, run_id, endpoint_id),
    )
    return (
        [e.model_dump(mode="json") for e in events],
        [m.model_dump(mode="json") for m in messages],
    )
