"""Deleting whole runs from PostgreSQL: every table with a run_id column, in one transaction.

The tables are found in the catalogue, not listed here, so a table added later
cannot be forgotten (the rollups are tables too: there are no continuous
aggregates to refresh, docs/architecture.md). The streams are the
caller's to purge first (callmeter_common.retention), or a projector folding the
run's events again would write its rows back.
"""

from __future__ import annotations

from datetime import datetime
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
# Tables whose run_id only points at a run: their rows outlive it.
REFERENCES_ONLY = (
    # a probe's history: each execution's judgement stays after its run is deleted
    "probe_executions",
)


def run_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table (partitioned parents and hypertables included) holding rows of runs."""
    return [r[0] for r in conn.execute(RUN_TABLES).fetchall() if r[0] not in REFERENCES_ONLY]


def delete_run_rows(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    """Delete every row of the run; returns the rows deleted per table."""
    deleted: dict[str, int] = {}
    with conn.transaction():
        for table in run_tables(conn):
            cur = conn.execute(f'DELETE FROM "{table}" WHERE run_id = %s', (run_id,))
            deleted[table] = cur.rowcount
    return deleted


def expired_runs(
    conn: psycopg.Connection[Any], before: datetime, probes_only: bool = False
) -> list[str]:
    """Finished runs that ended before `before` (retention), oldest first; with
    `probes_only`, only the runs of probe executions already judged."""
    probe = " JOIN probe_executions e USING (run_id) WHERE e.judged_at IS NOT NULL AND"
    rows = conn.execute(
        f"SELECT r.run_id FROM runs r{probe if probes_only else ' WHERE'} r.status = ANY(%s)"
        " AND COALESCE((r.doc->>'finished_at')::timestamptz, r.created_at) < %s"
        " ORDER BY r.created_at",
        (list(TERMINAL), before),
    ).fetchall()
    return [r[0] for r in rows]
