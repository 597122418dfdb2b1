"""The read models: every API process folds CALLMETER_EVENTS; exactly one writes.

Every process folds the log in memory (pages, the evaluator and webhooks read
that fold) and keeps the rows each event touched until they are stored. The log
is folded as two projections, tests and runs, each from its own subjects (one
subscription each) with its own stored position: a new test never waits behind
the endpoint events of a big run.

The process holding the writer locks (advisory locks on its two writing
connections, readmodels.WRITER_LOCKS: runs first, then tests) writes them in
batches, rows and position in one transaction; the others only read. When the
writer dies, PostgreSQL ends its sessions and drops the locks, and another
process takes over within a second: it resumes from the stored positions, whose
rows its own fold already has. A stored position only moves forward (a trigger
refuses anything else).

Each write NOTIFYs "<projection>:<position>" on commit. Every process LISTENs on
one connection, so a request that published an event waits, in any process,
until the read models show it (read-your-writes), without polling.

The stored rows are also the fold's snapshot: at start-up a process reads back
the tests and the runs not settled yet, with both positions, in one consistent
read, and folds only what follows, unless another version of the fold code
wrote them (FOLD_VERSION): then they are dropped and folded again from sequence 1.
Settled runs (finished and evaluated) leave memory once their rows are known to
be stored; a late event for one is folded onto its state read back from its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, WORKERS, Event
from callmeter_projections import WorkerState, apply_worker
from callmeter_projections.version import FOLD_VERSION
from callmeter_storage.readmodels import (
    CHANNEL,
    RUNS,
    SUBJECTS,
    TESTS,
    OpenRun,
    ReadModels,
    Touched,
    drop_views,
    load_open,
    load_run,
    projection_of,
    stored_position,
    stored_version,
    take_writer_lock,
    write_snapshot,
)

log = logging.getLogger(__name__)
# Events that change no row (a rate group's call records, tens a second) still move a
# projection's position; that alone is written at most this often, unless someone in
# this process waits for it. Written each 50 ms burst, it was most of the API's CPU in
# bench/cps.py at 24 calls/s (a transaction and a NOTIFY to every API process each).
POSITION_ONLY_EVERY_S = 1.0


@dataclass
class Part:
    """One projection's bookkeeping in this process."""

    name: str
    stored: int = 0  # its stored position, as last read or notified
    pending: list[tuple[int, list[Touched]]] = field(default_factory=list)  # not known stored
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    urgent: asyncio.Event = field(default_factory=asyncio.Event)  # rows touched, or a waiter
    written_at: float = 0.0  # monotonic time of this process's last write of it
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def seen(self, position: int) -> None:
        """Stored up to `position`: forget what that covers, release who waits for it."""
        if position <= self.stored:
            return
        self.stored = position
        self.pending = [p for p in self.pending if p[0] > position]
        still = []
        for seq, fut in self.waiters:
            if seq > position:
                still.append((seq, fut))
            elif not fut.done():
                fut.set_result(None)
        self.waiters = still


class Projector:
    def __init__(self, bus: Bus, database_url: str, retry_s: float = 1.0) -> None:
        self.bus = bus
        self.database_url = database_url
        self.retry_s = retry_s  # how often a standby tries the lock; back-off after errors
        self.models = ReadModels()
        self.workers: dict[str, WorkerState] = {}
        self.listeners: list[Callable[[int, Event], None]] = []  # told of every folded event
        self.writer = False  # this process holds the writer locks
        self.parts = {name: Part(name) for name in (TESTS, RUNS)}
        self._reader: psycopg.Connection[Any] | None = None  # reads settled runs back

    async def start(self) -> None:
        await asyncio.to_thread(self._resume)
        for name in (TESTS, RUNS):
            start = self.parts[name].stored + 1
            await self.bus.fold(EVENTS, start, self._on_event, subject=SUBJECTS[name])
        await self.bus.fold(
            WORKERS, 0, self._on_worker, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT
        )

    def tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The background work: watching the stored positions, and writing when we may."""
        return [
            asyncio.create_task(self.watch_positions(stop)),
            asyncio.create_task(self.write_when_writer(stop)),
        ]

    def _resume(self) -> None:
        """Read back what the stored rows hold, or drop rows another fold version wrote."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            if stored_version(conn) != FOLD_VERSION:
                log.info("read models written by another fold version: rebuilding them")
                drop_views(conn)
                return
        # One snapshot of the database: positions and rows must agree.
        with psycopg.connect(self.database_url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                stored = {name: stored_position(conn, name) for name in (TESTS, RUNS)}
                tests, runs = load_open(conn)
        self.models.restore(tests, runs)
        for name, seq in stored.items():
            self.parts[name].stored = self.models.positions[name] = seq
        self.models.runs.position = stored[RUNS]
        log.info("resumed read models at %s (%d runs in flight)", stored, len(runs))

    def run_project(self, run_id: str) -> str | None:
        """The project of a run that may have left memory, from its row."""
        run = self.models.runs.runs.get(run_id)
        if run is not None:
            return run.definition.project
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT doc->'definition'->>'project' FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone()
        return row[0] if row else None

    def _read_back(self, run_id: str) -> OpenRun | None:
        """A settled run as its rows hold it (retrying while the database is away)."""
        while True:
            try:
                if self._reader is None or self._reader.closed:
                    self._reader = psycopg.connect(self.database_url, autocommit=True)
                return load_run(self._reader, run_id)
            except psycopg.OperationalError as exc:
                log.warning("reading run %s back failed (%s); retrying", run_id, exc)
                self._reader = None
                time.sleep(self.retry_s)

    def _seen(self, name: str, position: int) -> None:
        """Stored up to `position`: settled runs whose rows that covers leave memory."""
        part = self.parts[name]
        part.seen(position)
        if name == RUNS:
            self.models.evict_settled(keep={r for _, ts in part.pending for _, r, _ in ts if r})

    async def _on_event(self, seq: int, event: Event) -> None:
        late = self.models.unknown_run(event)
        if late is not None:
            found = await asyncio.to_thread(self._read_back, late)
            # Restored and folded with no await between: a stored position seen in the
            # meantime evicts settled runs not pending a write, and would evict this one
            # again before its late event is folded (the event then touches no row, yet
            # its position is stored: a reader saw the position, not the change).
            if found is not None:
                self.models.restore([], [found])
        touched = self.models.fold(seq, event)
        for listener in self.listeners:
            listener(seq, event)
        part = self.parts[projection_of(event)]
        if seq > part.stored:
            part.pending.append((seq, touched))
            part.wake.set()
            if any(any(t) for t in touched):
                part.urgent.set()

    async def _on_worker(self, seq: int, event: Event) -> None:
        worker_id = getattr(event, "worker_id")  # noqa: B009
        state = apply_worker(event, self.workers.get(worker_id))
        if state is not None:
            self.workers[worker_id] = state

    # -- the stored positions, seen by every process --------------------------------

    async def watch_positions(self, stop: asyncio.Event) -> None:
        """LISTEN for each write's position (read once after LISTEN, so none is missed)."""
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    cur = await conn.execute("SELECT name, seq FROM projection_position")
                    for name, seq in await cur.fetchall():
                        if name in self.parts:
                            self._seen(name, int(seq))
                    async for note in conn.notifies():
                        name, _, seq = note.payload.partition(":")
                        self._seen(name, int(seq))
            except psycopg.OperationalError as exc:
                log.warning("listening for read-model writes failed (%s); reconnecting", exc)
                await asyncio.sleep(self.retry_s)

    async def wait_for(self, event: Event, seq: int, timeout: float) -> bool:
        """Wait until `event` (at stream sequence `seq`) is visible in the read models."""
        return await self.wait_for_position(projection_of(event), seq, timeout)

    async def wait_for_position(self, name: str, seq: int, timeout: float) -> bool:
        part = self.parts[name]
        if part.stored >= seq:
            return True
        fut = asyncio.get_running_loop().create_future()
        part.waiters.append((seq, fut))
        part.urgent.set()
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            part.waiters = [w for w in part.waiters if w[1] is not fut]

    # -- writing, by the one process holding the locks ------------------------------

    def _connect(self, name: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.database_url,
            autocommit=True,
            application_name=f"callmeter-api-writer-{name}-{os.getpid()}",
        )

    async def write_when_writer(self, stop: asyncio.Event) -> None:
        """Try the runs writer lock every `retry_s`; once held, take the tests lock too
        (a dying writer's sessions end together), then write both projections, each on
        the connection holding its lock (a lost connection is a lost lock)."""
        while not stop.is_set():
            conns: dict[str, psycopg.Connection[Any]] = {}
            try:
                conns[RUNS] = await asyncio.to_thread(self._connect, RUNS)
                while not await asyncio.to_thread(take_writer_lock, conns[RUNS], RUNS):
                    await asyncio.sleep(self.retry_s)
                conns[TESTS] = await asyncio.to_thread(self._connect, TESTS)
                # Free at once, or as soon as a dying writer's last session ends.
                while not await asyncio.to_thread(take_writer_lock, conns[TESTS], TESTS):
                    await asyncio.sleep(self.retry_s / 10)
                self.writer = True
                log.info("this process writes the read models now")
                writers = [
                    asyncio.create_task(self._write(self.parts[n], c)) for n, c in conns.items()
                ]
                try:
                    done, _ = await asyncio.wait(writers, return_when=asyncio.FIRST_EXCEPTION)
                    for task in done:
                        task.result()  # raises what stopped it
                finally:
                    for task in writers:
                        task.cancel()
            except psycopg.OperationalError as exc:
                log.warning("read-model writing stopped (%s); trying again", exc)
            finally:
                self.writer = False
                for conn in conns.values():
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(conn.close)
            await asyncio.sleep(self.retry_s)

    async def _write(self, part: Part, conn: psycopg.Connection[Any]) -> None:
        """Write what is folded past the stored position, batch by batch."""
        self._seen(part.name, await asyncio.to_thread(stored_position, conn, part.name))
        while True:
            if not part.pending:
                await part.wake.wait()
                part.wake.clear()
                await asyncio.sleep(0.05)  # gather a burst into one transaction
                continue
            due = part.written_at + POSITION_ONLY_EVERY_S - time.monotonic()
            if due > 0 and not part.urgent.is_set() and not part.waiters:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(part.urgent.wait(), due)
                    await asyncio.sleep(0.05)  # gather the burst it starts
                continue
            part.urgent.clear()
            snap = self.models.snapshot((t for _, ts in part.pending for t in ts), part.name)
            try:
                await asyncio.to_thread(write_snapshot, conn, snap)
            except psycopg.errors.CheckViolation:
                # Stored past our fold (a rebuild ran): skip to what is stored.
                self._seen(part.name, await asyncio.to_thread(stored_position, conn, part.name))
                continue
            part.written_at = time.monotonic()
            self._seen(part.name, snap.position)
