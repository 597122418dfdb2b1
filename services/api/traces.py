"""An endpoint's history read back from JetStream: lifecycle events and SIP messages.

The read models keep only the latest state of an endpoint; its timeline (every
event and every SIP message, in order) stays in the streams. One ephemeral,
filtered, no-ack consumer per read collects what is there now and stops: the
number of matching messages is known when the consumer is created.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import (
    EVENTS,
    TRACES,
    EventDecodeError,
    decode,
    endpoint_events,
    traces_for_endpoint,
)

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


async def endpoint_history(
    bus: Bus, run_id: str, endpoint_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(lifecycle events, SIP messages) of one endpoint, as JSON-ready dicts."""
    events, messages = await asyncio.gather(
        read_subject(bus, EVENTS.name, endpoint_events(run_id, endpoint_id)),
        read_subject(bus, TRACES.name, traces_for_endpoint(run_id, endpoint_id)),
    )
    return (
        [e.model_dump(mode="json") for e in events],
        [m.model_dump(mode="json") for m in messages],
    )
