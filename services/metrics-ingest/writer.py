"""Idempotent batch writes, rows and rollups in one transaction.

Fast path (`write_new_rows`): binary COPY straight into metric_samples. As
every row is new there, the rollup deltas are computed in Python
(rollup_deltas.deltas_of: a few wide rows per endpoint, not one per sample
and metric) and COPYed into the append-only rollup_*_delta tables
(compaction.py folds them later; the rollup_* views add both). If any row is
already stored (a redelivery after a crash or a lost ack), the COPY fails on
the primary key,
the transaction is rolled back, and the batch takes the conflict-tolerant
path (`write_staged`): COPY into a staging table, then INSERT ... ON CONFLICT
DO NOTHING RETURNING, which feeds the SQL rollups (`_ROLLUPS`), so only rows
stored for the first time are counted. Both paths give the same rollups
(tests/integration/test_results.py). Either way a redelivered sample changes
neither metric_samples nor any aggregate, and the common case costs a raw
COPY plus small appended COPYs: no upsert per rollup row (call_timings, one
row per endpoint, is the one upsert).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from callmeter_storage.rollup import BOUNDS
from callmeter_storage.rollup_deltas import (
    BINNED_METRICS,
    COPY_TYPES,
    STAT_METRICS,
    deltas_of,
)
from callmeter_storage.samples import TIMING_KEYS, WRITE_COLUMNS, WRITE_TYPES, to_write_order

_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in WRITE_COLUMNS)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS samples_stage (LIKE metric_samples INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COPY = sql.SQL("COPY samples_stage ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)


def _timing_update(key: str) -> str:
    # The newest sample wins; an older one (out of order) only fills gaps.
    return (
        f"{key} = CASE WHEN EXCLUDED.last_time >= t.last_time"
        f" THEN coalesce(EXCLUDED.{key}, t.{key}) ELSE coalesce(t.{key}, EXCLUDED.{key}) END"
    )


_TIMINGS = ", ".join(TIMING_KEYS)
# The SQL twin of rollup_deltas.deltas_of, over the rows this INSERT stored.
_STATS = ", ".join(
    f"count({m}), sum({m}::float8), min({m}::float8), max({m}::float8)" for m in STAT_METRICS
)
_BINS = ", ".join(
    # width_bucket = how many bounds are <= v; bin i holds bounds[i] <= v < bounds[i+1].
    f"(CASE WHEN {m} IS NOT NULL THEN greatest(width_bucket({m}, %(b_{m})s::float8[]) - 1, 0)"
    f" END)::smallint AS {m}_bin"
    for m in BINNED_METRICS
)
_BIN_KEYS = ", ".join(f"{m}_bin" for m in BINNED_METRICS)
_ANY_BINNED = " OR ".join(f"{m} IS NOT NULL" for m in BINNED_METRICS)
_ROLLUP_INPUT = (
    "run_id, group_name, endpoint_id, direction, time, "
    + ", ".join(dict.fromkeys(STAT_METRICS + BINNED_METRICS))
    + f", {_TIMINGS}"
)
_ROLLUPS = f"""), r AS (SELECT * FROM ins WHERE direction = 'recv'
), s AS (
  INSERT INTO rollup_second_delta
  SELECT run_id, group_name, date_trunc('second', time), count(*), {_STATS} FROM r GROUP BY 1, 2, 3
), e AS (
  INSERT INTO rollup_endpoint_delta
  SELECT run_id, endpoint_id, min(group_name), count(*), {_STATS} FROM r GROUP BY 1, 2
), h AS (
  INSERT INTO rollup_hist_delta
  SELECT run_id, endpoint_id, group_name, {_BIN_KEYS}, count(*)
  FROM (SELECT run_id, endpoint_id, group_name, {_BINS} FROM r WHERE {_ANY_BINNED}) b
  GROUP BY run_id, endpoint_id, group_name, {_BIN_KEYS}
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
# The fast path: every row is new (the COPY into metric_samples did not conflict),
# so the rollup deltas are computed here (deltas_of) and appended with a COPY
# each; call timings (one row per endpoint) go as column arrays into one upsert
# (a temporary table cost more: it is truncated at every commit).
_TIMING_TYPES = ["text", "text", "text", "timestamptz"] + [
    WRITE_TYPES[WRITE_COLUMNS.index(k)] for k in TIMING_KEYS
]
_APPLY_TIMINGS = f"""
INSERT INTO call_timings AS t
  SELECT * FROM unnest({", ".join(f"%s::{t}[]" for t in _TIMING_TYPES)})
  ON CONFLICT (run_id, endpoint_id) DO UPDATE SET
    {", ".join(_timing_update(k) for k in TIMING_KEYS)},
    last_time = greatest(t.last_time, EXCLUDED.last_time)"""
_COPY_DIRECT = sql.SQL("COPY metric_samples ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)
_COPY_DELTAS = tuple(
    (f"COPY {table} FROM STDIN (FORMAT BINARY)", COPY_TYPES[table])
    for table in ("rollup_second_delta", "rollup_endpoint_delta", "rollup_hist_delta")
)
_BOUNDS = {f"b_{m}": list(BOUNDS[m]) for m in BINNED_METRICS}


def copy_rows(
    cur: psycopg.Cursor[Any], statement: Any, types: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """One binary COPY of `rows` with the given column types."""
    with cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def write_new_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows none of which is stored yet; raises UniqueViolation (and stores
    nothing) if one is. Rows are in WRITE_COLUMNS order."""
    deltas = deltas_of(rows)
    rollups = (deltas.second, deltas.endpoint, deltas.hist)
    with conn.transaction(), conn.cursor() as cur:
        copy_rows(cur, _COPY_DIRECT, WRITE_TYPES, rows)
        for (statement, types), delta in zip(_COPY_DELTAS, rollups, strict=True):
            if delta:
                copy_rows(cur, statement, types, delta)
        cur.execute(_APPLY_TIMINGS, [list(column) for column in zip(*deltas.timings, strict=True)])
    return len(rows)


def store_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows (WRITE_COLUMNS order) exactly once; returns rows inserted."""
    try:
        return write_new_rows(conn, rows)
    except psycopg.errors.UniqueViolation:
        return write_staged(conn, rows)


def write_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows in COLUMNS order (samples.to_row) exactly once; returns rows inserted."""
    return store_rows(conn, [to_write_order(r) for r in rows])


def write_staged(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows (WRITE_COLUMNS order) exactly once, whichever are stored already."""
    with conn.transaction():
        conn.execute(_STAGE)
        with conn.cursor() as cur:
            copy_rows(cur, _COPY, WRITE_TYPES, rows)
            cur.execute(_MOVE, _BOUNDS)
            row = cur.fetchone()
            return int(row[0]) if row else 0
