"""Call records from CALLMETER_EVENTS into PostgreSQL (durable consumer, acked once stored)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from nats.aio.msg import Msg

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, CallRecorded, Event, call_records
from callmeter_storage import calls

DURABLE = "call-record-ingest"
SUBJECTS = (call_records(),)


class CallRecordWriter:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None

    def _write(self, records: list[CallRecorded]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        try:
            calls.write(self._conn, records)
        except psycopg.OperationalError:
            self._conn = None  # reconnect next time; the batch is redelivered
            raise

    async def handle(self, batch: list[tuple[Msg, Event]]) -> None:
        records = [e for _, e in batch if isinstance(e, CallRecorded)]
        await asyncio.to_thread(self._write, records)
        for msg, _ in batch:
            await msg.ack()


async def consume_call_records(
    bus: Bus, database_url: str, stop: asyncio.Event, linger_s: float = 0.0
) -> None:
    writer = CallRecordWriter(database_url)
    await bus.pull_loop(
        EVENTS, DURABLE, SUBJECTS, writer.handle, stop, max_deliver=-1, linger_s=linger_s
    )
