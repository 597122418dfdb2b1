"""The per-run watermark: RunSamplesStored once every sample and SIP message of a
finished run is stored.

How ingest knows "all": a worker publishes an endpoint's last samples before its
EndpointFinished (the supervisor flushes the run's batch first and waits for
JetStream's ack), and the scheduler ends a run after its endpoints finished. So
when RunCompleted or RunFailed is in CALLMETER_EVENTS, every sample of the run
is in CALLMETER_METRICS already, at or below the stream's last sequence read
now. Ingest acks a metrics message only once its samples are committed (or
dead-lettered with a reason), so once the ingest consumer's ack floor (every
message up to it acked) reaches that sequence, the run's samples are all
stored. SIP messages go the same way: the supervisor publishes an endpoint's
messages to CALLMETER_TRACES (acked) before its EndpointFinished, and the trace
writer acks a message once it is committed, so the mark also waits for the trace
consumer's ack floor to reach CALLMETER_TRACES' last sequence. Call records are in
CALLMETER_EVENTS before the run's ending (a caller's records precede its
EndpointFinished), read by a consumer of that subject alone: its ack floor passes the
ending's own sequence only if a later record was stored, so it is also done when it
has nothing left to deliver or to ack. Then RunSamplesStored, with the number of
receive-side samples stored: a run's results, SIP ladders and call records read from
then on are complete.

A run that ended by timeout (an endpoint never reported) may still get samples
from a host that was only late; they are stored, but after the watermark.

This is ingest reading its own consumer; nothing else needs to know how ingest
consumes. The run endings come through a durable consumer, so a run that ended
while ingest was down gets its watermark when ingest is back; several ingest
processes share it (each ending goes to one), and the event's Nats-Msg-Id (one
per run) keeps a repeated one out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from callmeter_common.bus import Bus
from callmeter_events import (
    EVENTS,
    METRICS,
    Event,
    RunCompleted,
    RunFailed,
    RunSamplesStored,
)
from callmeter_events.subjects import run_endings

log = logging.getLogger(__name__)

DURABLE = "metrics-ingest-watermark"
_SAMPLES = (
    "SELECT coalesce(sum(n), 0) FROM rollup_endpoint WHERE run_id = %s AND metric = 'samples'"
)


class Watermarks:
    def __init__(
        self,
        bus: Bus,
        database_url: str,
        consumers: dict[str, str],
        records: str,
        poll_s: float = 0.1,
    ) -> None:
        self.bus = bus
        self.database_url = database_url
        # stream -> ingest's own durable on it that takes every subject (METRICS, TRACES)
        self.consumers = consumers
        self.records = records  # ingest's durable on the call records in CALLMETER_EVENTS
        self.poll_s = poll_s

    async def serve(self, stop: asyncio.Event) -> None:
        await self.bus.pull_loop(
            EVENTS, DURABLE, run_endings(), self.handle, stop, batch=16, max_deliver=-1
        )

    async def handle(self, batch: list[tuple[Msg, Event]]) -> None:
        for msg, event in batch:
            if isinstance(event, RunCompleted | RunFailed):
                await self.mark(event.run_id, msg)
            await msg.ack()

    async def mark(self, run_id: str, msg: Msg | None = None) -> RunSamplesStored:
        """Wait until everything in ingest's streams now is stored, then publish the mark."""
        through = {stream: await self.bus.last_seq(stream) for stream in self.consumers}
        ending = msg.metadata.sequence.stream if msg else await self.bus.last_seq(EVENTS.name)
        touched = time.monotonic()
        while not await self._stored(through, ending):
            if msg is not None and time.monotonic() - touched > 10:  # inside ack_wait
                touched = time.monotonic()
                await msg.in_progress()
            await asyncio.sleep(self.poll_s)
        samples = await asyncio.to_thread(self._samples, run_id)
        event = RunSamplesStored(run_id=run_id, samples=samples, metrics_seq=through[METRICS.name])
        await self.bus.publish(event)
        log.info("run %s: %d samples stored (through %s)", run_id, samples, through)
        return event

    async def _stored(self, through: dict[str, int], ending: int) -> bool:
        """Each stream acked through its sequence in `through`, and every call record
        before the run's ending (at stream sequence `ending`) stored: their consumer
        acked past it, or has nothing left to deliver or ack."""
        for stream, durable in self.consumers.items():
            if await self._ack_floor(stream, durable) < through[stream]:
                return False
        try:
            info: Any = await self.bus.js.consumer_info(EVENTS.name, self.records)
        except NotFoundError:
            return False
        if int(info.ack_floor.stream_seq) >= ending:
            return True
        return int(info.num_pending) == 0 and int(info.num_ack_pending) == 0

    async def _ack_floor(self, stream: str, durable: str) -> int:
        """The stream sequence up to which ingest acked every message (0: not consuming yet)."""
        try:
            info: Any = await self.bus.js.consumer_info(stream, durable)
        except NotFoundError:
            return 0
        return int(info.ack_floor.stream_seq)

    def _samples(self, run_id: str) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(_SAMPLES, (run_id,)).fetchone()
            return int(row[0]) if row else 0
