"""Plain mode (no TimescaleDB): one native range partition of metric_samples per UTC day.

Partitions are created ahead at start-up and on demand by ingest for the days
its samples fall in. The DEFAULT partition catches anything else (a clock far
off, a day created late); when a day's partition is created after rows for
that day landed in DEFAULT, the function moves them in before attaching, since
PostgreSQL refuses to attach a range the DEFAULT partition already holds rows
for. All of it runs server-side in one function call under an advisory lock,
so concurrent ingest processes never race each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

PARTITION_LOCK = 727_002


def ensure_function(name: str, table: str, column: str, lock: int) -> str:
    """The SQL of a function `name(day date)` that creates `table`'s partition of that
    UTC day (by `column`) unless it exists, moving the day's rows out of DEFAULT first."""
    return f"""
CREATE OR REPLACE FUNCTION {name}(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := '{table}_' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    IF to_regclass(part) IS NOT NULL THEN  -- another session made it while we waited
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM {table}_default WHERE {column} >= lo AND {column} < hi) THEN
        EXECUTE format('CREATE TABLE %I (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM {table}_default'
                       ' WHERE {column} >= $1 AND {column} < $2 RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved', part) USING lo, hi;
        EXECUTE format('ALTER TABLE {table} ATTACH PARTITION %I'
                       ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF {table}'
                       ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    END IF;
    RETURN true;
END $$
"""


ENSURE = "callmeter_ensure_day_partition"
ENSURE_FUNCTION = ensure_function(ENSURE, "metric_samples", "time", PARTITION_LOCK)


def days_of(times: Iterable[datetime]) -> set[date]:
    """The UTC days a set of sample times fall in."""
    return {t.astimezone(UTC).date() for t in times}


def ensure_days(
    conn: psycopg.Connection[Any], days: Iterable[date], function: str = ENSURE
) -> list[date]:
    """Create the partitions of these days that do not exist yet (by `function`, one
    ensure_function made); returns those created.

    Each day commits on its own, so a long run of days never holds the lock long.
    """
    created = []
    for day in sorted(set(days)):
        with conn.transaction():
            row = conn.execute(f"SELECT {function}(%s)", (day,)).fetchone()
        if row and row[0]:
            created.append(day)
    return created


def ensure_ahead(conn: psycopg.Connection[Any], days_ahead: int, today: date | None = None) -> None:
    """Yesterday, today and `days_ahead` days after: what a running platform writes into."""
    today = today or datetime.now(UTC).date()
    ensure_days(conn, (today + timedelta(days=d) for d in range(-1, days_ahead + 1)))


def partition_days(conn: psycopg.Connection[Any], table: str = "metric_samples") -> list[date]:
    """The days that have their own partition of `table`, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass AND c.relname ~ %s",
        (table, f"^{table}_[0-9]{{8}}$"),
    ).fetchall()
    return sorted(datetime.strptime(r[0][-8:], "%Y%m%d").date() for r in rows)


def drop_expired(
    conn: psycopg.Connection[Any],
    retention_days: int,
    today: date | None = None,
    table: str = "metric_samples",
) -> list[date]:
    """Retention in plain mode: drop `table`'s day partitions older than retention_days.

    0 keeps everything. The rollups and call timings are kept: a finished run's
    summary stays readable after its raw samples are gone.
    """
    if retention_days <= 0:
        return []
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    dropped = [d for d in partition_days(conn, table) if d < cutoff]
    for day in dropped:
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS {table}_{day:%Y%m%d}")
    return dropped
