"""The durable pull loop of ingest, pipelined: messages are fetched and decoded
while the previous write is in flight, and the next write takes everything
decoded meanwhile, so a write grows with the load (fewer, bigger transactions
when ingest is behind, small ones that land at once when it is not). One
write in flight at a time; at most `max_rows` decoded rows wait for it.

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

from .handlers import Ingest, Pending

DURABLE = "metrics-ingest"


async def consume(
    bus: Bus, ingest: Ingest, stop: asyncio.Event, batch: int, max_rows: int = 20_000
) -> None:
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
    pending, per_msg = Pending(), 1.0  # rows per message, to size fetches of batches
    try:
        while not stop.is_set():
            if writing is not None and (writing.done() or len(pending.rows) >= max_rows):
                await writing
                writing = None
            if writing is None and pending.msgs:
                writing = asyncio.create_task(ingest.commit(pending))
                pending = Pending()
            want = max(1, min(batch, int((max_rows - len(pending.rows)) / per_msg)))
            try:
                msgs = await sub.fetch(want, timeout=0.05 if writing else 0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            if not msgs:
                continue
            before = len(pending.rows)
            await ingest.prepare(msgs, pending)
            per_msg = max(1.0, 0.8 * per_msg + 0.2 * (len(pending.rows) - before) / len(msgs))
    finally:
        if writing is not None:
            await writing
        await sub.unsubscribe()  # else closing the connection waits on the open pull
