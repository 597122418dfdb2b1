"""The loop scheduler and dispatcher share: fold the log, then decide, then publish.

State is rebuilt at start-up from the service's last snapshot (if it was made by
the same FOLD_VERSION) plus the CALLMETER_EVENTS that follow it, or from sequence 1
without one, and from CALLMETER_WORKERS (last message per subject). No decision is
taken before the fold has caught up with where the stream was when the service
started, so a restarted service re-derives exactly the decisions that were still
missing; the ones it already published come back with the same Nats-Msg-Id and
JetStream drops them.

Finished runs leave memory as soon as they are folded: neither service decides
anything for a terminal run, so a late event for one (an endpoint report from a
worker declared lost) changes no decision and is rightly ignored. The state kept,
and so each snapshot (every SNAPSHOT_EVERY events or SNAPSHOT_EVERY_S seconds, and
at shutdown), holds only the runs still in flight: start-up and memory do not
grow with history.

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

from callmeter_events import EVENTS, WORKERS, Event, is_call_record, utcnow
from callmeter_projections import RunsProjection, WorkerState, apply_worker
from callmeter_projections.snapshot import decode_runs, encode_runs

from .bus import TRANSIENT_PUBLISH_ERRORS, Bus
from .snapshots import SnapshotStore

log = logging.getLogger(__name__)

Decide = Callable[["World", datetime], Iterable[Event]]
SNAPSHOT_EVERY = 10_000  # events folded since the last snapshot
SNAPSHOT_EVERY_S = 30.0  # or seconds, whichever comes first (if anything was folded)
# Decisions wait while a snapshot is encoded: however big the state, the next snapshot
# waits this many times as long as the last one took (it costs at most 1/20 of the loop).
SNAPSHOT_COST_SHARE = 20


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
            run_id, _ = self.runs.apply(seq, event)
            if run_id is not None and self.runs.runs[run_id].terminal:
                self.runs.forget(run_id)  # nothing more is decided for it


class Reconciler:
    def __init__(
        self,
        bus: Bus,
        decide: Decide,
        tick_s: float = 0.5,
        snapshots: SnapshotStore | None = None,
        name: str = "",
    ) -> None:
        self.bus = bus
        self.decide = decide
        self.tick_s = tick_s
        self.world = World()
        self.snapshots = snapshots
        self.name = name  # the snapshot's name in the store
        self._snap_seq = 0
        self._snap_at = time.monotonic()
        self._snap_cost_s = 0.0  # how long encoding the last snapshot took
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
        self._wake.set()

    async def _on_worker_event(self, seq: int, event: Event) -> None:
        self.world.apply(seq, event)
        self._wake.set()

    async def _resume(self) -> None:
        """Restore the last snapshot when it fits the code and the stream."""
        store = self.snapshots
        data = (
            await self.bus.patiently("snapshot", lambda: store.load(self.name)) if store else None
        )
        runs = decode_runs(data) if data else None
        if runs is None or runs.position > self._target_seq:
            log.info("no usable snapshot: folding from sequence 1")
            return
        self.world.runs = runs
        self._snap_seq = runs.position
        log.info(
            "resumed from the snapshot at sequence %d (%d runs in flight)",
            runs.position,
            len(runs.runs),
        )

    async def start(self) -> None:
        # Each step is tried again through a cluster's elections (a fold's consumer is
        # only created when its call succeeds: a retry never folds anything twice).
        bus = self.bus
        self._target_seq = await bus.patiently("events", lambda: bus.last_seq(EVENTS.name))
        await self._resume()
        start = self.world.runs.position + 1
        await bus.patiently(
            "events fold",
            lambda: bus.fold(
                EVENTS, start, self._on_event, caught_up=self._caught_up, skip=is_call_record
            ),
        )
        await bus.patiently(
            "workers fold",
            lambda: bus.fold(WORKERS, 0, self._on_worker_event, api.DeliverPolicy.LAST_PER_SUBJECT),
        )
        await self._caught_up.wait()
        log.info("caught up at sequence %d", self.world.runs.position)

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
        try:
            await self._loop(stop)
        finally:
            await self.snapshot(force=True)
            await watch

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            await self.snapshot()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick_s)
            except TimeoutError:
                pass
            await asyncio.sleep(0.02)  # let a burst of events fold before deciding again

    async def snapshot(self, force: bool = False) -> None:
        """Save the fold when SNAPSHOT_EVERY events or SNAPSHOT_EVERY_S seconds have passed."""
        position = self.world.runs.position
        if self.snapshots is None or position <= self._snap_seq:
            return
        due = position - self._snap_seq >= SNAPSHOT_EVERY or (
            time.monotonic() - self._snap_at >= SNAPSHOT_EVERY_S
        )
        affordable = time.monotonic() - self._snap_at >= SNAPSHOT_COST_SHARE * self._snap_cost_s
        if not ((due and affordable) or force):
            return
        began = time.monotonic()
        data = encode_runs(self.world.runs)  # no await before this: one consistent state
        self._snap_cost_s = time.monotonic() - began
        try:
            await self.snapshots.save(self.name, data)
        except Exception as exc:  # noqa: BLE001 - a missed snapshot only costs a longer fold
            log.warning("snapshot at %d not saved: %s", position, exc)
            return
        self._snap_seq, self._snap_at = position, time.monotonic()

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
        snapshots = await bus.patiently("snapshots", lambda: SnapshotStore.open(bus.js))
        await Reconciler(bus, decide, snapshots=snapshots, name=service).run(stop)
    finally:
        await bus.close()
