"""SIP messages in PostgreSQL: an endpoint's ladder lives as long as the run's samples.

CALLMETER_TRACES is only the buffer between workers and the writer (metrics-ingest);
the API reads ladders from here. Plain mode partitions the table by UTC day like
metric_samples (created on demand, DEFAULT catches the rest); TimescaleDB mode
makes it a hypertable. The primary key (run, endpoint, time, event id) makes a
redelivered message a no-op and serves the ladder query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from callmeter_events import SipMessage

from . import partitions

TABLE = """
CREATE TABLE sip_messages (
    run_id text NOT NULL, endpoint_id text NOT NULL, ts timestamptz NOT NULL,
    event_id text NOT NULL, direction text NOT NULL CHECK (direction IN ('in', 'out')),
    text text NOT NULL, occurred_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, endpoint_id, ts, event_id)
)"""

# ids: migrations 001, partitions 002, folds 003
ENSURE = "callmeter_ensure_trace_partition"
ENSURE_FUNCTION = partitions.ensure_function(ENSURE, "sip_messages", "ts", 727_004)


def create(conn: psycopg.Connection[Any], timescale: bool) -> None:
    conn.execute(TABLE + ("" if timescale else " PARTITION BY RANGE (ts)"))
    if timescale:
        conn.execute("SELECT create_hypertable('sip_messages', 'ts')")
    else:
        conn.execute("CREATE TABLE sip_messages_default PARTITION OF sip_messages DEFAULT")
        conn.execute(ENSURE_FUNCTION)


def write(conn: psycopg.Connection[Any], messages: Sequence[SipMessage]) -> None:
    """Store messages (again: duplicates are ignored), their day partitions first."""
    if not messages:
        return
    if conn.execute("SELECT to_regclass('sip_messages_default')").fetchone()[0]:  # type: ignore[index]
        partitions.ensure_days(conn, partitions.days_of(m.ts for m in messages), ENSURE)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sip_messages VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (m.run_id, m.endpoint_id, m.ts, m.event_id, m.direction, m.text, m.occurred_at)
                for m in messages
            ],
        )


def read(conn: psycopg.Connection[Any], run_id: str, endpoint_id: str) -> list[SipMessage]:
    """One endpoint's SIP messages in time order."""
    rows = conn.execute(
        "SELECT event_id, direction, ts, text, occurred_at FROM sip_messages"
        " WHERE run_id = %s AND endpoint_id = %s ORDER BY ts, occurred_at, event_id",
        (run_id, endpoint_id),
    ).fetchall()
    return [
        SipMessage(
            run_id=run_id,
            endpoint_id=endpoint_id,
            event_id=e,
            direction=d,
            ts=ts,
            text=text,
            occurred_at=at,
        )
        for e, d, ts, text, at in rows
    ]


def drop_expired(conn: psycopg.Connection[Any], retention_days: int) -> None:
    """Plain mode: whole day partitions older than the retention (0 keeps all)."""
    partitions.drop_expired(conn, retention_days, table="sip_messages")
