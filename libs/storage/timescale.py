"""TimescaleDB mode: compression and retention of the samples hypertable.

Only used when `CREATE EXTENSION timescaledb` worked in migration 1 (the
hypertable itself is made there). The embedded PostgreSQL of `make test` has no
TimescaleDB; the storage tests run in this mode too when
CALLMETER_TEST_TIMESCALE_URL points at a TimescaleDB server (`.ci/run` starts one).

Every figure is read from the rollups (rollup.py), as in plain mode: no
continuous aggregates (docs/architecture.md says why).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

# A run's chunks are compressed once they are a day old: by then the run has
# finished (runs last minutes to hours) and nothing writes into them again.
COMPRESS_AFTER = "1 day"
# Continuous aggregates of earlier versions (per-second figures of a run and of a
# group): the rollups hold the same figures, per direction too, in both storage modes,
# so migration 25 drops them (docs/architecture.md, "One aggregation path").
DROPPED_CAGGS = ("metric_run_1s", "metric_group_1s")


def setup(conn: psycopg.Connection[Any]) -> None:
    """Compression of the samples hypertable."""
    conn.execute(
        "ALTER TABLE metric_samples SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'run_id, endpoint_id, direction',"
        " timescaledb.compress_orderby = 'time')"
    )
    conn.execute(
        f"SELECT add_compression_policy('metric_samples', INTERVAL '{COMPRESS_AFTER}',"
        " if_not_exists => true)"
    )


def drop_continuous_aggregates(conn: psycopg.Connection[Any], tries: int = 5) -> None:
    """Drop the continuous aggregates of earlier versions, each after its refresh policy.

    The scheduler may be refreshing one as it is dropped: CI once saw the drop fail with
    "tuple concurrently deleted". Removing the policy first starts no new refresh and
    cancels a running one (TimescaleDB signals its worker, without waiting for it), and
    the drop is tried again, in a savepoint, while that worker winds down.
    """
    for name in DROPPED_CAGGS:
        for attempt in range(1, tries + 1):
            try:
                with conn.transaction():  # a savepoint inside the migration's transaction
                    if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,):
                        conn.execute(
                            "SELECT remove_continuous_aggregate_policy(%s, if_exists => true)",
                            (name,),
                        )
                    conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
                break
            except psycopg.errors.InternalError_ as exc:
                # only the race with a refresh ("tuple concurrently deleted/updated")
                if "concurrently" not in str(exc) or attempt == tries:
                    raise
                time.sleep(0.5)


def apply_retention(conn: psycopg.Connection[Any], retention_days: int) -> None:
    """Replace the retention policy with the configured one (0: keep everything)."""
    conn.execute("SELECT remove_retention_policy('metric_samples', if_exists => true)")
    if retention_days > 0:
        conn.execute(
            "SELECT add_retention_policy('metric_samples', make_interval(days => %s))",
            (retention_days,),
        )
