"""The durable pull loop of ingest, pipelined: the next batch is fetched and decoded
while the previous one is being written, with one write in flight at a time.

Not Bus.pull_loop: that decodes every message through the generic event
union before the handler sees it, which is most of ingest's CPU; here the
handler decodes (fast path first). The consumer config is the same, so an
existing durable carries on.
"""

from __future__ import annotations

import asyncio

import nats
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import METRICS

from .handlers import Ingest

DURABLE = "metrics-ingest"


async def consume(bus: Bus, ingest: Ingest, stop: asyncio.Event, batch: int) -> None:
    config = api.ConsumerConfig(
        durable_name=DURABLE,
        ack_policy=api.AckPolicy.EXPLICIT,
        max_deliver=-1,  # a sample is never given up on: Postgres may be down for a while
        ack_wait=30,
        filter_subjects=list(METRICS.subjects),
        max_ack_pending=batch * 40,  # how far ingest may fall behind before JetStream waits
    )
    await bus.js.add_consumer(METRICS.name, config)
    sub = await bus.js.pull_subscribe_bind(DURABLE, stream=METRICS.name)
    writing: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            pending = await ingest.prepare(msgs)
            if writing is not None:
                await writing
            writing = asyncio.create_task(ingest.commit(pending))
    finally:
        if writing is not None:
            await writing
        await sub.unsubscribe()  # else closing the connection waits on the open pull
