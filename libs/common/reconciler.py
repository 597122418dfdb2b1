"""The loop scheduler and dispatcher share: fold the log, then decide, then publish.

State is rebuilt from CALLMETER_EVENTS (from sequence 1) and CALLMETER_WORKERS
(last message per subject) at start-up. No decision is taken before the fold has
caught up with where the stream was when the service started, so a restarted
service re-derives exactly the decisions that were still missing; the ones it
already published come back with the same Nats-Msg-Id and JetStream drops them.

After publishing, the loop also waits until its own events have come back
through the fold before deciding again ("read your own writes"): otherwise a
decision taken on a state that lacks the previous one can contradict it (assign
an endpoint, then finish it as "never started" one tick later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nats
from nats.js import api

from callmeter_events import EVENTS, WORKERS, Event, utcnow
from callmeter_projections import RunsProjection, WorkerState, apply_worker

from .bus import TRANSIENT_PUBLISH_ERRORS, Bus

log = logging.getLogger(__name__)

Decide = Callable[["World", datetime], Iterable[Event]]


@dataclass
class World:
    """What both control services know: runs, endpoints and workers."""

    runs: RunsProjection = field(default_factory=RunsProjection)
    workers: dict[str, WorkerState] = field(default_factory=dict)
    workers_position: int = 0
    # Since when this service has heard the workers' stream without a break (the stream
    # answering, the fold keeping up with it); None: not now. A worker's silence counts
    # only from then: while a NATS node fails over, no heartbeat can arrive from anyone.
    workers_heard_since: datetime | None = datetime.min.replace(tzinfo=UTC)

    def apply(self, seq: int, event: Event) -> None:
        if event.stream == WORKERS.name:
            self.workers_position = max(self.workers_position, seq)
            worker_id = getattr(event, "worker_id")  # noqa: B009 - every worker event has it
            state = apply_worker(event, self.workers.get(worker_id))
            if state is not None:
                self.workers[worker_id] = state
        else:
            self.runs.apply(seq, event)


class Reconciler:
    def __init__(self, bus: Bus, decide: Decide, tick_s: float = 0.5) -> None:
        self.bus = bus
        self.decide = decide
        self.tick_s = tick_s
        self.world = World()
        self._caught_up = asyncio.Event()
        self._target_seq = 0
        self._wake = asyncio.Event()
        self._sent: dict[str, float] = {}
        self._own: dict[str, int] = {}  # stream -> last sequence this loop published
        self._own_since = 0.0
        self.own_wait_s = 5.0  # a fold that lags longer than this no longer blocks decisions
        self.publish_patience_s = 3.0  # a refused decision is re-derived, not held

    async def _on_event(self, seq: int, event: Event) -> None:
        self.world.apply(seq, event)
        if not self._caught_up.is_set() and seq >= self._target_seq:
            self._caught_up.set()
        self._wake.set()

    async def _on_worker_event(self, seq: int, event: Event) -> None:
        self.world.apply(seq, event)
        self._wake.set()

    async def start(self) -> None:
        self._target_seq = await self.bus.last_seq(EVENTS.name)
        if self._target_seq == 0:
            self._caught_up.set()
        await self.bus.fold(EVENTS, 1, self._on_event)
        await self.bus.fold(
            WORKERS, 0, self._on_worker_event, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT
        )
        await self._caught_up.wait()
        log.info("caught up at sequence %d", self._target_seq)

    async def watch_workers_stream(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        """Keep `world.workers_heard_since`: the stream answers, and the fold has
        everything the stream held one look ago (an ordered consumer whose node died
        delivers nothing until it is recreated on the new leader)."""
        seen = 0
        while not stop.is_set():
            try:
                last = await asyncio.wait_for(self.bus.last_seq(WORKERS.name), timeout=2)
                heard = self.world.workers_position >= seen
                seen = last
            except (TimeoutError, nats.errors.Error):
                heard = False
            if not heard:
                self.world.workers_heard_since = None
            elif self.world.workers_heard_since is None:
                self.world.workers_heard_since = utcnow()
                log.info("hearing the workers' stream again")
            await asyncio.sleep(every_s)

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        watch = asyncio.create_task(self.watch_workers_stream(stop))
        while not stop.is_set():
            await self.step()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick_s)
            except TimeoutError:
                pass
            await asyncio.sleep(0.02)  # let a burst of events fold before deciding again
        await watch

    def _folded_own_writes(self, now: float) -> bool:
        positions = {
            EVENTS.name: self.world.runs.position,
            WORKERS.name: self.world.workers_position,
        }
        if all(positions.get(stream, 0) >= seq for stream, seq in self._own.items()):
            return True
        return now - self._own_since > self.own_wait_s

    async def step(self) -> None:
        """Decide on the current state and publish what was not published yet."""
        now = time.monotonic()
        if self.bus.degraded:
            # NATS unreachable, or an outage seen here not reported yet: a decision now
            # would miss the outage that deadlines count. Decide once it is folded.
            await self.bus.report_outages()
            return
        if self.world.runs.position < self.bus.reported_seq:
            return  # the outage report is not folded yet
        if not self._folded_own_writes(now):
            return  # the next folded event wakes the loop again
        fresh = [e for e in self.decide(self.world, utcnow()) if e.msg_id() not in self._sent]
        for event in fresh:
            self._sent[event.msg_id()] = now
        if fresh:
            try:
                await self._publish(fresh)
            except TRANSIENT_PUBLISH_ERRORS:
                # NATS refused (the bus now counts an outage): these decisions are taken
                # again, on the state as it is once NATS accepts publishes.
                log.warning("publishing %d decisions failed; deciding again later", len(fresh))
                for event in fresh:
                    self._sent.pop(event.msg_id(), None)
        # A decision not yet folded back after 10 s may be re-published (dedup still holds).
        self._sent = {k: t for k, t in self._sent.items() if now - t < 10}

    async def _publish(self, events: list[Event], concurrency: int = 256) -> None:
        """Publish concurrently, remembering the highest sequence per stream.

        A duplicate (dropped by JetStream) acks with the original's sequence,
        which the fold has already seen or will see: waiting for it is right.
        """
        gate = asyncio.Semaphore(concurrency)
        own: dict[str, int] = {}

        async def one(event: Event) -> None:
            async with gate:
                seq = await self.bus.publish(event, patience_s=self.publish_patience_s)
            own[event.stream] = max(own.get(event.stream, 0), seq)

        await asyncio.gather(*(one(e) for e in events))
        self._own = own
        self._own_since = time.monotonic()


async def serve_reconciler(
    service: str, nats_url: str, decide: Decide, stop: asyncio.Event
) -> None:
    """The whole life of a control service: connect, fold, decide until `stop`."""
    bus = await Bus.connect(nats_url, service)
    await bus.ensure_streams()
    try:
        await Reconciler(bus, decide).run(stop)
    finally:
        await bus.close()
