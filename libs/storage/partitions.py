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

ENSURE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION callmeter_ensure_day_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'metric_samples_' || to_char(day, 'YYYYMMDD');
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock({PARTITION_LOCK});
    IF to_regclass(part) IS NOT NULL THEN  -- another session made it while we waited
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM metric_samples_default WHERE time >= lo AND time < hi) THEN
        EXECUTE format('CREATE TABLE %I (LIKE metric_samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM metric_samples_default'
                       ' WHERE time >= $1 AND time < $2 RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved', part) USING lo, hi;
        EXECUTE format('ALTER TABLE metric_samples ATTACH PARTITION %I'
                       ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF metric_samples'
                       ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    END IF;
    RETURN true;
END $$
"""


def days_of(times: Iterable[datetime]) -> set[date]:
    """The UTC days a set of sample times fall in."""
    return {t.astimezone(UTC).date() for t in times}


def ensure_days(conn: psycopg.Connection[Any], days: Iterable[date]) -> list[date]:
    """Create the partitions of these days that do not exist yet; returns those created.

    Each day commits on its own, so a long run of days never holds the lock long.
    """
    created = []
    for day in sorted(set(days)):
        with conn.transaction():
            row = conn.execute("SELECT callmeter_ensure_day_partition(%s)", (day,)).fetchone()
        if row and row[0]:
            created.append(day)
    return created


def ensure_ahead(conn: psycopg.Connection[Any], days_ahead: int, today: date | None = None) -> None:
    """Yesterday, today and `days_ahead` days after: what a running platform writes into."""
    today = today or datetime.now(UTC).date()
    ensure_days(conn, (today + timedelta(days=d) for d in range(-1, days_ahead + 1)))


def partition_days(conn: psycopg.Connection[Any]) -> list[date]:
    """The days that have their own partition, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'metric_samples'::regclass"
        " AND c.relname ~ '^metric_samples_[0-9]{8}$'"
    ).fetchall()
    return sorted(datetime.strptime(r[0][-8:], "%Y%m%d").date() for r in rows)


def drop_expired(
    conn: psycopg.Connection[Any], retention_days: int, today: date | None = None
) -> list[date]:
    """Retention in plain mode: drop whole day partitions older than retention_days.

    0 keeps everything. The rollups and call timings are kept: a finished run's
    summary stays readable after its raw samples are gone.
    """
    if retention_days <= 0:
        return []
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    dropped = [d for d in partition_days(conn) if d < cutoff]
    for day in dropped:
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS metric_samples_{day:%Y%m%d}")
    return dropped
