"""The read models: every API process folds CALLMETER_EVENTS; exactly one writes.

Every process folds the whole log in memory (pages, the evaluator and webhooks
read that fold) and keeps the rows each event touched until they are stored.
The process holding the writer lock (an advisory lock on its writing
connection, readmodels.WRITER_LOCK) writes them in batches, with the position,
in one transaction; the others only read. When the writer dies, PostgreSQL ends
its session and drops the lock, and another process takes over within a second:
it resumes from the stored position, whose rows its own fold already has. The
stored position only moves forward (a trigger refuses anything else).

Each write NOTIFYs its position on commit. Every process LISTENs on one
connection, so a request that published an event waits, in any process, until
the read models show it (read-your-writes), without polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import psycopg
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, WORKERS, Event
from callmeter_projections import WorkerState, apply_worker
from callmeter_storage.readmodels import (
    CHANNEL,
    ReadModels,
    Touched,
    stored_position,
    take_writer_lock,
    write_snapshot,
)  # fmt: skip

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, bus: Bus, database_url: str, retry_s: float = 1.0) -> None:
        self.bus = bus
        self.database_url = database_url
        self.retry_s = retry_s  # how often a standby tries the lock; back-off after errors
        self.models = ReadModels()
        self.workers: dict[str, WorkerState] = {}
        self.listeners: list[Callable[[int, Event], None]] = []  # told of every folded event
        self.writer = False  # this process holds the writer lock
        self.stored = 0  # the stored position, as last read or notified
        self._pending: list[tuple[int, list[Touched]]] = []  # folded, not known stored
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def start(self) -> None:
        await self.bus.fold(EVENTS, 1, self._on_event)
        await self.bus.fold(
            WORKERS, 0, self._on_worker, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT
        )

    def tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The background work: watching the stored position, and writing when we may."""
        return [
            asyncio.create_task(self.watch_position(stop)),
            asyncio.create_task(self.write_when_writer(stop)),
        ]

    async def _on_event(self, seq: int, event: Event) -> None:
        touched = self.models.fold(seq, event)
        for listener in self.listeners:
            listener(seq, event)
        if seq > self.stored:
            self._pending.append((seq, touched))
            self._wake.set()

    async def _on_worker(self, seq: int, event: Event) -> None:
        worker_id = getattr(event, "worker_id")  # noqa: B009
        state = apply_worker(event, self.workers.get(worker_id))
        if state is not None:
            self.workers[worker_id] = state

    # -- the stored position, seen by every process ---------------------------------

    def _seen(self, position: int) -> None:
        """The read models are stored up to `position`: forget what that covers and
        release the requests waiting for it."""
        if position <= self.stored:
            return
        self.stored = position
        self._pending = [p for p in self._pending if p[0] > position]
        still = []
        for seq, fut in self._waiters:
            if seq <= position:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((seq, fut))
        self._waiters = still

    async def watch_position(self, stop: asyncio.Event) -> None:
        """LISTEN for each write's position (read once after LISTEN, so none is missed)."""
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    cur = await conn.execute(
                        "SELECT coalesce(max(seq), 0) FROM projection_position WHERE name = %s",
                        ("read_models",),
                    )
                    row = await cur.fetchone()
                    self._seen(int(row[0]) if row else 0)
                    async for note in conn.notifies():
                        self._seen(int(note.payload))
            except psycopg.OperationalError as exc:
                log.warning("listening for read-model writes failed (%s); reconnecting", exc)
                await asyncio.sleep(self.retry_s)

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until events up to `seq` are visible in the read models."""
        if self.stored >= seq:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not fut]

    # -- writing, by the one process holding the lock -------------------------------

    async def write_when_writer(self, stop: asyncio.Event) -> None:
        """Try the writer lock every `retry_s`; while holding it, write."""
        while not stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = await asyncio.to_thread(
                    psycopg.connect, self.database_url, autocommit=True,
                    application_name=f"callmeter-api-writer-{os.getpid()}",
                )  # fmt: skip
                while not await asyncio.to_thread(take_writer_lock, conn):
                    await asyncio.sleep(self.retry_s)
                self.writer = True
                log.info("this process writes the read models now")
                await self._write(conn)
            except psycopg.OperationalError as exc:
                log.warning("read-model writing stopped (%s); trying again", exc)
            finally:
                self.writer = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(conn.close)
            await asyncio.sleep(self.retry_s)

    async def _write(self, conn: psycopg.Connection[Any]) -> None:
        """Write what is folded past the stored position, batch by batch, on the
        connection that holds the lock (a lost connection is a lost lock)."""
        self._seen(await asyncio.to_thread(stored_position, conn))
        while True:
            if not self._pending:
                await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(0.05)  # gather a burst into one transaction
                continue
            batch = self._pending
            snap = self.models.snapshot(t for _, ts in batch for t in ts)
            try:
                await asyncio.to_thread(write_snapshot, conn, snap)
            except psycopg.errors.CheckViolation:
                # Stored past our fold (a rebuild ran): skip to what is stored.
                self._seen(await asyncio.to_thread(stored_position, conn))
                continue
            self._seen(snap.position)
