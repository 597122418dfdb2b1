"""The durable pull loop of ingest, pipelined: messages are fetched and decoded
while the previous write is in flight, and the next write takes everything
decoded meanwhile, so a write grows with the load. One write in flight at a
time; at most `max_rows` decoded rows wait for it.

While messages keep coming, a write also waits until it has `min_rows` rows
or its oldest message has waited `linger_s`: part of a write's cost is per
write and per endpoint in it (measured: 500-row writes cost ~1.4x per sample
what 5,000-row writes do), so writing each message as it came would keep
ingest busy with small writes exactly when it should catch up. Once nothing
has come for `quiet_s`, what is pending is all there is, and it is written at
once: the linger never holds back the end of a burst or a quiet stream.

Not Bus.pull_loop: that decodes every message through the generic event
union before the handler sees it, which is most of ingest's CPU; here the
handler decodes (fast path first). The consumer config is the same, so an
existing durable carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nats
from nats.aio.msg import Msg
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import METRICS
from callmeter_events.streams import INGEST_DURABLE

from .handlers import Ingest, Pending

log = logging.getLogger(__name__)


def write_due(rows: int, waited_s: float, quiet: bool, min_rows: int, linger_s: float) -> bool:
    """Whether what is decoded and waiting (rows, and messages to ack) goes now, with no
    write in flight: the stream went quiet, enough rows, or the oldest waited enough."""
    return quiet or rows >= min_rows or waited_s >= linger_s


async def consume(
    bus: Bus,
    ingest: Ingest,
    stop: asyncio.Event,
    batch: int,
    max_rows: int = 20_000,
    min_rows: int = 5_000,
    linger_s: float = 0.25,
    quiet_s: float = 0.02,
) -> None:
    config = api.ConsumerConfig(
        durable_name=INGEST_DURABLE,
        ack_policy=api.AckPolicy.EXPLICIT,
        max_deliver=-1,  # a sample is never given up on: Postgres may be down for a while
        ack_wait=30,
        filter_subjects=list(METRICS.subjects),
        max_ack_pending=batch * 40,  # how far ingest may fall behind before JetStream waits
    )
    await bus.js.add_consumer(METRICS.name, config)
    sub = await bus.js.pull_subscribe_bind(INGEST_DURABLE, stream=METRICS.name)
    writing: asyncio.Task[None] | None = None
    fetching: asyncio.Task[list[Msg]] | None = None
    pending, per_msg = Pending(), 1.0  # rows per message, to size fetches of batches
    quiet = False  # the last fetch found nothing: pending is all there is for now
    try:
        while not stop.is_set():
            if writing is not None and (writing.done() or len(pending.rows) >= max_rows):
                await writing
                writing = None
            waited = time.monotonic() - pending.since
            if (
                writing is None
                and pending.msgs
                and write_due(len(pending.rows), waited, quiet, min_rows, linger_s)
            ):
                writing = asyncio.create_task(ingest.commit(pending))
                pending = Pending()
            if fetching is None:
                want = max(1, min(batch, int((max_rows - len(pending.rows)) / per_msg)))
                if writing is not None:
                    timeout = 0.05
                else:
                    timeout = quiet_s if pending.msgs else 0.5
                fetching = asyncio.create_task(sub.fetch(want, timeout=timeout))
            # Whichever comes first: a write that ends starts the next one at once (with
            # what was decoded meanwhile), not only once the fetch in flight returns.
            await asyncio.wait(
                [t for t in (fetching, writing) if t is not None],
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not fetching.done():
                continue
            fetched, fetching = fetching, None
            try:
                msgs = fetched.result()
            except (TimeoutError, nats.errors.TimeoutError):
                quiet = True
                if writing is None and not pending.msgs and ingest.unfolded_since is not None:
                    writing = asyncio.create_task(ingest.fold())  # idle: fold the rollups now
                continue
            except nats.errors.Error as exc:
                # A NATS node going away, the consumer moving to a new leader: fetch again.
                log.warning("fetch from %s failed (%r); fetching again", INGEST_DURABLE, exc)
                await asyncio.sleep(0.5)
                continue
            quiet = False
            if not msgs:
                continue
            before = len(pending.rows)
            await ingest.prepare(msgs, pending)
            per_msg = max(1.0, 0.8 * per_msg + 0.2 * (len(pending.rows) - before) / len(msgs))
    finally:
        if fetching is not None:
            # Its messages, if any, are not acked: they come back (as pending's do).
            with contextlib.suppress(Exception):
                await fetching
        if writing is not None:
            await writing
        await sub.unsubscribe()  # else closing the connection waits on the open pull
