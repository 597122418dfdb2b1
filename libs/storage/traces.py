"""SIP messages in PostgreSQL: an endpoint's ladder lives as long as the run's samples.

CALLMETER_TRACES is only the buffer between workers and the writer (metrics-ingest);
the API reads ladders from here. Plain mode partitions the table by UTC day like
metric_samples (created on demand, DEFAULT catches the rest); TimescaleDB mode
makes it a hypertable. The primary key (run, endpoint, time, event id) makes a
redelivered message a no-op and serves the ladder query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from callmeter_events import SipMessage

TABLE = """
CREATE TABLE sip_messages (
    run_id text NOT NULL, endpoint_id text NOT NULL, ts timestamptz NOT NULL,
    event_id text NOT NULL, direction text NOT NULL CHECK (direction IN ('in', 'out')),
    text text NOT NULL, occurred_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, endpoint_id, ts, event_id)
)"""

ENSURE_FUNCTION = """
CREATE OR REPLACE FUNCTION callmeter_ensure_trace_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'sip_messages_' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(727004);  -- ids: migrations 001, partitions 002, folds 003
    IF to_regclass(part) IS NOT NULL
       OR EXISTS (SELECT 1 FROM sip_messages_default WHERE ts >= lo AND ts < hi) THEN
        RETURN false;  -- made meanwhile, or that day already lives in DEFAULT
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF sip_messages FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    RETURN true;
END $$
"""


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
        for day in sorted({m.ts.astimezone(UTC).date() for m in messages}):
            with conn.transaction():
                conn.execute("SELECT callmeter_ensure_trace_partition(%s)", (day,))
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
    if retention_days <= 0:
        return
    cutoff = datetime.now(UTC).date() - timedelta(days=retention_days)
    for (name,) in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'sip_messages'::regclass AND c.relname ~ '^sip_messages_[0-9]{8}$'"
    ).fetchall():
        if datetime.strptime(name[-8:], "%Y%m%d").date() < cutoff:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
