"""Deleting whole runs from PostgreSQL: every table with a run_id column, in one transaction.

The tables are found in the catalogue, not listed here, so a table added later
cannot be forgotten. TimescaleDB's continuous aggregates are refreshed over the
run's time range afterwards (they are views, not tables). The streams are the
caller's to purge first (callmeter_common.retention), or a projector folding the
run's events again would write its rows back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

RUN_TABLES = """
SELECT c.relname FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attname = 'run_id' AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition AND n.nspname = current_schema()
ORDER BY c.relname
"""
TERMINAL = ("COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW")


def run_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table (partitioned parents and hypertables included) holding rows of runs."""
    return [r[0] for r in conn.execute(RUN_TABLES).fetchall()]


def _continuous_aggregates(conn: psycopg.Connection[Any]) -> list[str]:
    exists = conn.execute("SELECT to_regclass('timescaledb_information.continuous_aggregates')")
    if exists.fetchone()[0] is None:  # type: ignore[index]
        return []
    rows = conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")
    return [r[0] for r in rows.fetchall()]


def delete_run_rows(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    """Delete every row of the run; returns the rows deleted per table."""
    span = conn.execute(
        "SELECT min(time), max(time) FROM metric_samples WHERE run_id = %s", (run_id,)
    ).fetchone()
    deleted: dict[str, int] = {}
    with conn.transaction():
        for table in run_tables(conn):
            cur = conn.execute(f'DELETE FROM "{table}" WHERE run_id = %s', (run_id,))
            deleted[table] = cur.rowcount
    if span and span[0] is not None:
        _refresh(conn, span[0], span[1])
    return deleted


def _refresh(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> None:
    for view in _continuous_aggregates(conn):
        # CALL cannot run inside a transaction block: the connection must be autocommit.
        conn.execute(
            "CALL refresh_continuous_aggregate(%s, %s, %s)",
            (view, lo - timedelta(minutes=1), hi + timedelta(minutes=1)),
        )


def expired_runs(conn: psycopg.Connection[Any], before: datetime) -> list[str]:
    """Finished runs that ended before `before` (retention), oldest first."""
    rows = conn.execute(
        "SELECT run_id FROM runs WHERE status = ANY(%s)"
        " AND COALESCE((doc->>'finished_at')::timestamptz, created_at) < %s"
        " ORDER BY created_at",
        (list(TERMINAL), before),
    ).fetchall()
    return [r[0] for r in rows]
