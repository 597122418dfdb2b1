"""TimescaleDB mode: compression, retention and continuous aggregates.

Only used when `CREATE EXTENSION timescaledb` worked in migration 1 (the
hypertable itself is made there). The embedded PostgreSQL of `make test` has no
TimescaleDB; the storage tests run in this mode too when
CALLMETER_TEST_TIMESCALE_URL points at a TimescaleDB server (`.ci/run` starts one).

The per-second continuous aggregates are materialised by their refresh policy
alone (nothing else calls a refresh, so no two refreshes of a window overlap):
every minute it materialises the last hour up to a minute ago, in one pass.
Newer buckets come from real-time aggregation (`materialized_only = false`).
Samples reach storage seconds after they are measured, far inside that hour; a
sample stored more than an hour late (an ingest outage) is in the rollups but
not in the aggregate's materialised buckets.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .rollup import ROLLUP_METRICS

# A run's chunks are compressed once they are a day old: by then the run has
# finished (runs last minutes to hours) and nothing writes into them again.
COMPRESS_AFTER = "1 day"
# The refresh policy of the continuous aggregates (see the module docstring). A
# window of 2 days of 1-second buckets, refreshed in 10-bucket batches (the
# default), took ~28 s and ~52,000 log lines per refresh of a new aggregate.
REFRESH_POLICY = {
    "start_offset": "01:00:00",
    "end_offset": "00:01:00",
    "schedule_interval": "00:01:00",
    "buckets_per_batch": 0,  # one pass: a minute's buckets are a small refresh
}


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
    ensure_refresh_policies(conn)


def _policy(conn: psycopg.Connection[Any], cagg: str) -> dict[str, Any] | None:
    # The jobs view names a refresh policy's continuous aggregate as its hypertable.
    row = conn.execute(
        "SELECT config, schedule_interval::text FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = %s",
        (cagg,),
    ).fetchone()
    if row is None:
        return None
    config, every = row
    return {
        "start_offset": config.get("start_offset"),
        "end_offset": config.get("end_offset"),
        "schedule_interval": every,
        "buckets_per_batch": config.get("buckets_per_batch"),
    }


def ensure_refresh_policies(conn: psycopg.Connection[Any]) -> list[str]:
    """Give each continuous aggregate REFRESH_POLICY (replacing another one, e.g. the
    2-day window of earlier versions); returns the aggregates whose policy changed.
    Applied at every start-up, like retention: an unchanged policy is left alone."""
    changed = []
    for name in CAGGS:
        if _policy(conn, name) == REFRESH_POLICY:
            continue
        conn.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)", (name,))
        conn.execute(
            "SELECT add_continuous_aggregate_policy(%s, start_offset => %s::interval,"
            " end_offset => %s::interval, schedule_interval => %s::interval,"
            " buckets_per_batch => %s)",
            (
                name,
                REFRESH_POLICY["start_offset"],
                REFRESH_POLICY["end_offset"],
                REFRESH_POLICY["schedule_interval"],
                REFRESH_POLICY["buckets_per_batch"],
            ),
        )
        changed.append(name)
    return changed


def apply_retention(conn: psycopg.Connection[Any], retention_days: int) -> None:
    """Replace the retention policy with the configured one (0: keep everything)."""
    conn.execute("SELECT remove_retention_policy('metric_samples', if_exists => true)")
    if retention_days > 0:
        conn.execute(
            "SELECT add_retention_policy('metric_samples', make_interval(days => %s))",
            (retention_days,),
        )


def run_series(
    conn: psycopg.Connection[Any], run_id: str, group: str | None = None
) -> list[tuple[Any, ...]]:
    """(second, metric, n, avg, min, max) rows of a run (or one of its groups) from the
    continuous aggregate."""
    cols = ", ".join(f"{m}_n, {m}_avg, {m}_min, {m}_max" for m in ROLLUP_METRICS)
    args: tuple[str, ...]
    if group is None:
        query, args = "FROM metric_run_1s WHERE run_id = %s", (run_id,)
    else:
        query, args = "FROM metric_group_1s WHERE run_id = %s AND group_name = %s", (run_id, group)
    rows = conn.execute(f"SELECT second, {cols} {query} ORDER BY second", args).fetchall()
    out = []
    for row in rows:
        for i, metric in enumerate(ROLLUP_METRICS):
            n, avg, lo, hi = row[1 + 4 * i : 5 + 4 * i]
            if n:
                out.append((row[0], metric, n, avg, lo, hi))
    return out
