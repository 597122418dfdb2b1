"""Queries the API and UI answer from: run views and the metric summary."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

# The listening quality users judge by is measured on the receive side.
_SUMMARY = """
SELECT count(*) AS samples,
       avg(mos) AS mos, min(mos) AS mos_min,
       percentile_cont(0.05) WITHIN GROUP (ORDER BY mos) AS mos_p5,
       avg(jitter_ms) AS jitter_ms, avg(fraction_lost) AS fraction_lost,
       avg(rtt_ms) AS rtt_ms, avg(packet_rate_ps) AS packets_recv_rate_ps,
       sum(packets_lost) AS packets_lost, sum(packets) AS packets_received
FROM metric_samples WHERE run_id = %s AND direction = 'recv'
"""


def run_row(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT doc FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def endpoint_rows(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT doc FROM endpoints WHERE run_id = %s"
        " ORDER BY group_name, length(endpoint_id), endpoint_id",
        (run_id,),
    ).fetchall()
    return [r[0] for r in rows]


def summary(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """Averages over the run's receive-side samples; null when there are none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SUMMARY, (run_id,)).fetchone() or {}
    return {k: (float(v) if v is not None and k != "samples" else v) for k, v in row.items()}


def samples_per_endpoint(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT endpoint_id, count(*) FROM metric_samples"
        " WHERE run_id = %s AND direction = 'recv' GROUP BY endpoint_id",
        (run_id,),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def list_runs(conn: psycopg.Connection[Any], test_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    where, args = ("WHERE test_id = %s", (test_id, limit)) if test_id else ("", (limit,))
    rows = conn.execute(
        f"SELECT doc FROM runs {where} ORDER BY created_at DESC LIMIT %s", args
    ).fetchall()
    return [r[0] for r in rows]


def list_tests(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT doc FROM tests WHERE NOT deleted ORDER BY updated_at DESC"
    ).fetchall()
    return [r[0] for r in rows]


def test_row(conn: psycopg.Connection[Any], test_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT doc FROM tests WHERE test_id = %s AND NOT deleted", (test_id,)
    ).fetchone()
    return row[0] if row else None
