"""Keeps the read models current: folds CALLMETER_EVENTS, writes batches to Postgres.

The in-memory fold starts at sequence 1; rows are only written for events
past the position stored with them, so a restart resumes without rewriting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, WORKERS, Event
from callmeter_projections import WorkerState, apply_worker
from callmeter_storage.readmodels import (
    ReadModels,
    Snapshot,
    Touched,
    stored_position,
    write_snapshot,
)  # fmt: skip

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, bus: Bus, database_url: str) -> None:
        self.bus = bus
        self.database_url = database_url
        self.models = ReadModels()
        self.workers: dict[str, WorkerState] = {}
        self.listeners: list[Callable[[Event], None]] = []  # told of every folded event
        self.written = 0
        self._stored = 0
        self._pending: list[Touched] = []
        self._wake = asyncio.Event()
        self._written_changed = asyncio.Condition()
        self._conn: psycopg.Connection[Any] | None = None

    async def start(self) -> None:
        self._conn = await asyncio.to_thread(psycopg.connect, self.database_url, autocommit=True)
        self._stored = await asyncio.to_thread(stored_position, self._conn)
        self.written = self._stored
        await self.bus.fold(EVENTS, 1, self._on_event)
        await self.bus.fold(
            WORKERS, 0, self._on_worker, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT
        )

    async def _on_event(self, seq: int, event: Event) -> None:
        touched = self.models.fold(seq, event)
        for listener in self.listeners:
            listener(event)
        if seq > self._stored:
            self._pending.extend(touched)
            self._wake.set()

    async def _on_worker(self, seq: int, event: Event) -> None:
        worker_id = getattr(event, "worker_id")  # noqa: B009
        state = apply_worker(event, self.workers.get(worker_id))
        if state is not None:
            self.workers[worker_id] = state

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.05)  # gather a burst into one transaction
            touched, self._pending = self._pending, []
            snap = self.models.snapshot(touched)
            while True:
                try:
                    await asyncio.to_thread(self._write, snap)
                    break
                except psycopg.OperationalError as exc:
                    log.warning("read-model write failed (%s); retrying", exc)
                    self._conn = None
                    await asyncio.sleep(1)
            async with self._written_changed:
                self.written = snap.position
                self._written_changed.notify_all()

    def _write(self, snap: Snapshot) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        write_snapshot(self._conn, snap)

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until events up to `seq` are visible in the read models."""
        async with self._written_changed:
            try:
                await asyncio.wait_for(
                    self._written_changed.wait_for(lambda: self.written >= seq), timeout
                )
            except TimeoutError:
                return False
        return True
