"""SIP messages from CALLMETER_TRACES into PostgreSQL (durable consumer, acked once stored)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from nats.aio.msg import Msg

from callmeter_common.bus import Bus
from callmeter_events import TRACES, Event, SipMessage
from callmeter_storage import traces

DURABLE = "trace-ingest"


class TraceWriter:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None

    def _write(self, messages: list[SipMessage]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        try:
            traces.write(self._conn, messages)
        except psycopg.OperationalError:
            self._conn = None  # reconnect next time; the batch is redelivered
            raise

    async def handle(self, batch: list[tuple[Msg, Event]]) -> None:
        messages = [e for _, e in batch if isinstance(e, SipMessage)]
        await asyncio.to_thread(self._write, messages)
        for msg, _ in batch:
            await msg.ack()


async def consume_traces(
    bus: Bus, database_url: str, stop: asyncio.Event, linger_s: float = 0.0
) -> None:
    writer = TraceWriter(database_url)
    await bus.pull_loop(
        TRACES, DURABLE, TRACES.subjects, writer.handle, stop, max_deliver=-1, linger_s=linger_s
    )
