"""TimescaleDB mode: compression, retention and continuous aggregates.

Only used when `CREATE EXTENSION timescaledb` worked in migration 1 (the
hypertable itself is made there). Not exercised by the default test run: the
embedded PostgreSQL has no TimescaleDB; tests/integration/test_results_timescale.py
runs it when CALLMETER_TEST_TIMESCALE_URL points at a TimescaleDB server.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .rollup import ROLLUP_METRICS

# A run's chunks are compressed once they are a day old: by then the run has
# finished (runs last minutes to hours) and nothing writes into them again.
COMPRESS_AFTER = "1 day"


def _aggregates() -> str:
    return ",\n".join(
        f"    count({m}) AS {m}_n, avg({m}) AS {m}_avg, min({m}) AS {m}_min, max({m}) AS {m}_max"
        for m in ROLLUP_METRICS
    )


def _cagg(name: str, keys: str) -> str:
    # Receive side only: that is the listening quality the results pages show.
    return f"""
CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous, timescaledb.materialized_only = false)
AS SELECT {keys}, time_bucket(INTERVAL '1 second', time) AS second,
{_aggregates()}
FROM metric_samples WHERE direction = 'recv'
GROUP BY {keys}, second
WITH NO DATA"""


CAGGS = {"metric_run_1s": "run_id", "metric_group_1s": "run_id, group_name"}


def setup(conn: psycopg.Connection[Any]) -> None:
    """Compression and the per-run / per-group per-second continuous aggregates."""
    conn.execute(
        "ALTER TABLE metric_samples SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'run_id, endpoint_id, direction',"
        " timescaledb.compress_orderby = 'time')"
    )
    conn.execute(
        f"SELECT add_compression_policy('metric_samples', INTERVAL '{COMPRESS_AFTER}',"
        " if_not_exists => true)"
    )
    for name, keys in CAGGS.items():
        conn.execute(_cagg(name, keys))
        # Real-time aggregation covers the newest seconds; the policy materialises the rest.
        conn.execute(
            f"SELECT add_continuous_aggregate_policy('{name}', start_offset => INTERVAL '2 days',"
            " end_offset => INTERVAL '10 seconds', schedule_interval => INTERVAL '30 seconds',"
            " if_not_exists => true)"
        )


def apply_retention(conn: psycopg.Connection[Any], retention_days: int) -> None:
    """Replace the retention policy with the configured one (0: keep everything)."""
    conn.execute("SELECT remove_retention_policy('metric_samples', if_exists => true)")
    if retention_days > 0:
        conn.execute(
            "SELECT add_retention_policy('metric_samples', make_interval(days => %s))",
            (retention_days,),
        )


def run_series(conn: psycopg.Connection[Any], run_id: str) -> list[tuple[Any, ...]]:
    """(second, metric, n, avg, min, max) rows of a run from the continuous aggregate."""
    cols = ", ".join(f"{m}_n, {m}_avg, {m}_min, {m}_max" for m in ROLLUP_METRICS)
    rows = conn.execute(
        f"SELECT second, {cols} FROM metric_run_1s WHERE run_id = %s ORDER BY second", (run_id,)
    ).fetchall()
    out = []
    for row in rows:
        for i, metric in enumerate(ROLLUP_METRICS):
            n, avg, lo, hi = row[1 + 4 * i : 5 + 4 * i]
            if n:
                out.append((row[0], metric, n, avg, lo, hi))
    return out
