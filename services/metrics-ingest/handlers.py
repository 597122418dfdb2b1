"""decode -> rows -> one transaction -> ack. Nothing is acked before it is committed."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from typing import Any

import psycopg
from nats.aio.msg import Msg

from callmeter_common.bus import Bus
from callmeter_events import EventDecodeError, MetricSample, decode
from callmeter_storage import partitions
from callmeter_storage.samples import SampleRejected, sample_from_json, to_row

from .writer import write_rows

log = logging.getLogger(__name__)

# Errors that belong to one row, not to the database: the batch is split to find
# the row, which is dead-lettered, and the rest is stored.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, UnicodeError)
# Errors that mean "the database is not there right now": hold and retry.
DOWN_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
Pending = list[tuple[Msg, tuple[Any, ...]]]


class Ingest:
    def __init__(self, bus: Bus, database_url: str, retry_s: float, mode: str = "plain") -> None:
        self.bus = bus
        self.database_url = database_url
        self.retry_s = retry_s
        self.partitioned = mode == "plain"
        self.known_days: set[date] = set()
        self.conn: psycopg.Connection[Any] | None = None
        self.stored = 0
        self.dead = 0

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(self.database_url, autocommit=True)
        return self.conn

    async def prepare(self, msgs: list[Msg]) -> Pending:
        """Decode a fetched batch into rows; what cannot be stored is dead-lettered now."""
        pending: Pending = []
        for msg in msgs:
            try:
                sample = sample_from_json(msg.data)
                if sample is None:  # not the canonical shape: the full decode decides
                    event = decode(msg.data)
                    if not isinstance(event, MetricSample):
                        raise SampleRejected(f"not a MetricSample: {type(event).__name__}")
                    sample = event
                pending.append((msg, to_row(sample)))
            except (EventDecodeError, SampleRejected) as exc:
                await self._reject(msg, str(exc))
        return pending

    async def commit(self, pending: Pending) -> None:
        """Store the rows (retrying while Postgres is down), then ack: never before."""
        for msg in await self._store(pending):
            await msg.ack()

    async def _reject(self, msg: Msg, reason: str) -> None:
        try:
            await self.bus.dead_letter(msg, reason)
        except Exception:  # noqa: BLE001 - NATS trouble: leave it unacked, it comes back
            log.exception("could not dead-letter %s; it will be redelivered", msg.subject)
            return
        self.dead += 1
        await msg.ack()

    async def _store(self, pending: Pending) -> list[Msg]:
        """Write until it works; returns the messages whose rows are committed."""
        last_touch = time.monotonic()
        while pending:
            try:
                return await self._write_isolating(pending)
            except DOWN_ERRORS as exc:
                # Backpressure: keep the batch unacked and retry until Postgres is back;
                # JetStream stops sending once max_ack_pending is reached.
                log.warning("postgres unavailable (%s); retrying in %.1fs", exc, self.retry_s)
                self.conn = None
                if time.monotonic() - last_touch > 10:  # well inside ack_wait
                    last_touch = time.monotonic()
                    for msg, _ in pending:
                        await msg.in_progress()
                await asyncio.sleep(self.retry_s)
        return []

    async def _write_isolating(self, pending: Pending) -> list[Msg]:
        try:
            self.stored += await asyncio.to_thread(self._write, [row for _, row in pending])
            return [msg for msg, _ in pending]
        except ROW_ERRORS as exc:
            if len(pending) == 1:
                await self._reject(pending[0][0], f"rejected by the database: {exc}")
                return []
        # Bisect: log2(batch) extra writes find each bad row; good halves commit.
        half = len(pending) // 2
        return await self._write_isolating(pending[:half]) + await self._write_isolating(
            pending[half:]
        )

    def _write(self, rows: list[tuple[Any, ...]]) -> int:
        conn = self._connection()
        if self.partitioned:
            missing = partitions.days_of(r[0] for r in rows) - self.known_days
            if missing:
                partitions.ensure_days(conn, missing)
                self.known_days |= missing
        return write_rows(conn, rows)
