"""Idempotent batch writes, rows and rollups in one transaction.

Fast path (`write_new_rows`): binary COPY straight into metric_samples, plus
a COPY of the few columns the rollups need into a temporary table that feeds
the rollup statement. If any row is already stored (a redelivery after a
crash or a lost ack), the COPY fails on the primary key, the transaction is
rolled back, and the batch takes the conflict-tolerant path (`write_rows`):
COPY into a staging table, then INSERT ... ON CONFLICT DO NOTHING RETURNING,
which feeds the rollups, so only rows stored for the first time are counted.
Either way a redelivered sample changes neither metric_samples nor any
aggregate, and the common case costs about what a raw COPY costs, plus the
rollups.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from callmeter_storage.migrations import TIMING_KEYS
from callmeter_storage.rollup import BOUNDS, COUNTED_ONLY, ROLLUP_METRICS
from callmeter_storage.samples import WRITE_COLUMNS, WRITE_TYPES, to_write_order

_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in WRITE_COLUMNS)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS samples_stage (LIKE metric_samples INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COPY = sql.SQL("COPY samples_stage ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)


def _stats_upsert(table: str, keys: str, conflict: str) -> str:
    return f"""
  INSERT INTO {table} AS t ({keys}, n, total, lo, hi)
  SELECT {keys}, count(*), sum(value), min(value), max(value) FROM v GROUP BY {keys}
  ON CONFLICT ({conflict}) DO UPDATE SET n = t.n + EXCLUDED.n, total = t.total + EXCLUDED.total,
    lo = least(t.lo, EXCLUDED.lo), hi = greatest(t.hi, EXCLUDED.hi)"""


def _timing_update(key: str) -> str:
    # The newest sample wins; an older one (out of order) only fills gaps.
    return (
        f"{key} = CASE WHEN EXCLUDED.last_time >= t.last_time"
        f" THEN coalesce(EXCLUDED.{key}, t.{key}) ELSE coalesce(t.{key}, EXCLUDED.{key}) END"
    )


_SECOND_KEY = "run_id, group_name, second, metric"
# An endpoint id always maps to one group, so grouping by it too never splits a row.
_ENDPOINT_KEY = "run_id, endpoint_id, metric"
_UNPIVOT = ", ".join(
    [f"('{m}', i.{m}, %(b_{m})s::float8[])" for m in ROLLUP_METRICS]
    + [f"('{m}', i.{m}::float8, NULL)" for m in COUNTED_ONLY if m != "samples"]
    + ["('samples', 1.0, NULL)"]
)
_RETURNED = ", ".join(ROLLUP_METRICS + tuple(m for m in COUNTED_ONLY if m != "samples"))
_TIMINGS = ", ".join(TIMING_KEYS)
_ROLLUP_INPUT = f"run_id, group_name, endpoint_id, direction, time, {_RETURNED}, {_TIMINGS}"
_ROLLUPS = f"""), v AS (
  SELECT i.run_id, i.group_name, i.endpoint_id, date_trunc('second', i.time) AS second,
    m.metric, m.value, m.bounds IS NOT NULL AS binned,
    greatest(width_bucket(m.value, m.bounds) - 1, 0) AS bin
  FROM ins i CROSS JOIN LATERAL (VALUES {_UNPIVOT}) AS m(metric, value, bounds)
  WHERE i.direction = 'recv' AND m.value IS NOT NULL
), s AS ({_stats_upsert("rollup_second", _SECOND_KEY, _SECOND_KEY)}
), e AS ({_stats_upsert("rollup_endpoint", _ENDPOINT_KEY + ", group_name", _ENDPOINT_KEY)}
), h AS (
  INSERT INTO rollup_hist AS t (run_id, endpoint_id, metric, bin, group_name, n)
  SELECT run_id, endpoint_id, metric, bin, min(group_name), count(*) FROM v WHERE binned
  GROUP BY run_id, endpoint_id, metric, bin
  ON CONFLICT (run_id, endpoint_id, metric, bin) DO UPDATE SET n = t.n + EXCLUDED.n
), c AS (
  INSERT INTO call_timings AS t (run_id, endpoint_id, group_name, last_time, {_TIMINGS})
  SELECT DISTINCT ON (run_id, endpoint_id) run_id, endpoint_id, group_name, time, {_TIMINGS}
  FROM ins ORDER BY run_id, endpoint_id, time DESC, direction
  ON CONFLICT (run_id, endpoint_id) DO UPDATE SET
    {", ".join(_timing_update(k) for k in TIMING_KEYS)},
    last_time = greatest(t.last_time, EXCLUDED.last_time)
)
SELECT count(*) FROM ins"""
# The conflict-tolerant path: the rollups see only the rows this INSERT stored.
_MOVE = sql.SQL(
    "WITH ins AS (INSERT INTO metric_samples ({cols}) SELECT {cols} FROM samples_stage"
    " ON CONFLICT DO NOTHING RETURNING " + _ROLLUP_INPUT + _ROLLUPS
).format(cols=_COLS)
# The fast path: every row is new (the COPY into metric_samples did not conflict).
_ROLLUP_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_stage ON COMMIT DELETE ROWS AS SELECT "
    + _ROLLUP_INPUT
    + " FROM metric_samples WITH NO DATA"
)
_ROLLUP_COLUMNS = tuple(c.strip() for c in _ROLLUP_INPUT.split(","))
_FROM_STAGE = "WITH ins AS (SELECT " + _ROLLUP_INPUT + " FROM rollup_stage" + _ROLLUPS
_COPY_DIRECT = sql.SQL("COPY metric_samples ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)
_COPY_ROLLUP = "COPY rollup_stage FROM STDIN (FORMAT BINARY)"
_ROLLUP_TYPES = [WRITE_TYPES[WRITE_COLUMNS.index(c)] for c in _ROLLUP_COLUMNS]
_rollup_cells = operator.itemgetter(*(WRITE_COLUMNS.index(c) for c in _ROLLUP_COLUMNS))
_BOUNDS = {f"b_{m}": list(BOUNDS[m]) for m in ROLLUP_METRICS}


def write_new_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows none of which is stored yet; raises UniqueViolation (and stores
    nothing) if one is. Rows are in WRITE_COLUMNS order."""
    with conn.transaction():
        conn.execute(_ROLLUP_STAGE)
        with conn.cursor() as cur:
            with cur.copy(_COPY_DIRECT) as copy:
                copy.set_types(list(WRITE_TYPES))
                for row in rows:
                    copy.write_row(row)
            with cur.copy(_COPY_ROLLUP) as copy:
                copy.set_types(_ROLLUP_TYPES)
                for row in rows:
                    copy.write_row(_rollup_cells(row))
            cur.execute(_FROM_STAGE, _BOUNDS)
    return len(rows)


def store_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows (WRITE_COLUMNS order) exactly once; returns rows inserted."""
    try:
        return write_new_rows(conn, rows)
    except psycopg.errors.UniqueViolation:
        return write_staged(conn, rows)


def write_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows in COLUMNS order (samples.to_row) exactly once; returns rows inserted."""
    return write_staged(conn, [to_write_order(r) for r in rows])


def write_staged(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows (WRITE_COLUMNS order) exactly once, whichever are stored already."""
    with conn.transaction():
        conn.execute(_STAGE)
        with conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(list(WRITE_TYPES))
                for row in rows:
                    copy.write_row(row)
            cur.execute(_MOVE, _BOUNDS)
            row = cur.fetchone()
            return int(row[0]) if row else 0
