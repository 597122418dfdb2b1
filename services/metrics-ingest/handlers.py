"""decode -> rows -> one transaction -> ack. Nothing is acked before it is committed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from nats.aio.msg import Msg

from callmeter_common.bus import Bus
from callmeter_events import Event, MetricSample
from callmeter_storage.samples import SampleRejected, to_row

from .writer import write_rows

log = logging.getLogger(__name__)


class Ingest:
    def __init__(self, bus: Bus, database_url: str, retry_s: float) -> None:
        self.bus = bus
        self.database_url = database_url
        self.retry_s = retry_s
        self.conn: psycopg.Connection[Any] | None = None
        self.stored = 0

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(self.database_url, autocommit=True)
        return self.conn

    async def handle_batch(self, batch: list[tuple[Msg, Event]]) -> None:
        rows, good = [], []
        for msg, event in batch:
            try:
                if not isinstance(event, MetricSample):
                    raise SampleRejected(f"not a MetricSample: {type(event).__name__}")
                rows.append(to_row(event))
                good.append(msg)
            except SampleRejected as exc:
                await self.bus.dead_letter(msg, str(exc))
                await msg.ack()
        while rows:
            try:
                self.stored += await asyncio.to_thread(self._write, rows)
                break
            except psycopg.OperationalError as exc:
                # Backpressure: hold the batch unacked and retry until Postgres is back.
                log.warning("postgres unavailable (%s); retrying in %.1fs", exc, self.retry_s)
                self.conn = None
                for msg in good:
                    await msg.in_progress()
                await asyncio.sleep(self.retry_s)
        for msg in good:
            await msg.ack()

    def _write(self, rows: list[tuple[Any, ...]]) -> int:
        return write_rows(self._connection(), rows)
