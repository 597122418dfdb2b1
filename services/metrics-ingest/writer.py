"""Idempotent batch writes, rows and rollups in one transaction.

Fast path (`write_new_rows`): binary COPY straight into metric_samples. As
every row is new there, the rollup deltas are computed in Python
(`rollup_deltas`: one row per key of each rollup table, not one per sample)
and COPYed into the append-only rollup_*_delta tables (compaction.py folds
them later; the rollup_* views add both). If any row is already stored (a
redelivery after a crash or a lost ack), the COPY fails on the primary key,
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

import operator
from bisect import bisect_right
from collections import Counter, defaultdict
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


def _stats_delta(table: str, keys: str) -> str:
    return f"""
  INSERT INTO {table}_delta ({keys}, n, total, lo, hi)
  SELECT {keys}, count(*), sum(value), min(value), max(value) FROM v GROUP BY {keys}"""


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
), s AS ({_stats_delta("rollup_second", _SECOND_KEY)}
), e AS ({_stats_delta("rollup_endpoint", _ENDPOINT_KEY + ", group_name")}
), h AS (
  INSERT INTO rollup_hist_delta (run_id, endpoint_id, metric, bin, group_name, n)
  SELECT run_id, endpoint_id, metric, bin, min(group_name), count(*) FROM v WHERE binned
  GROUP BY run_id, endpoint_id, metric, bin
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
# so the rollup deltas are computed here, one row per key of each rollup table,
# and appended with a COPY each; call timings go through a temporary table into
# one upsert.
_TIMINGS_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS delta_timings (LIKE call_timings) ON COMMIT DELETE ROWS"
)
_APPLY_TIMINGS = f"""
INSERT INTO call_timings AS t SELECT * FROM delta_timings
  ON CONFLICT (run_id, endpoint_id) DO UPDATE SET
    {", ".join(_timing_update(k) for k in TIMING_KEYS)},
    last_time = greatest(t.last_time, EXCLUDED.last_time)"""
_COPY_DIRECT = sql.SQL("COPY metric_samples ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)
_STATS_TYPES = ["float8", "float8", "float8"]
_COPY_DELTAS = (
    ("COPY rollup_second_delta FROM STDIN (FORMAT BINARY)",
     ["text", "text", "timestamptz", "text", "int8", *_STATS_TYPES]),
    ("COPY rollup_endpoint_delta FROM STDIN (FORMAT BINARY)",
     ["text", "text", "text", "text", "int8", *_STATS_TYPES]),
    ("COPY rollup_hist_delta FROM STDIN (FORMAT BINARY)",
     ["text", "text", "text", "int2", "text", "int8"]),
    ("COPY delta_timings FROM STDIN (FORMAT BINARY)",
     ["text", "text", "text", "timestamptz",
      *(WRITE_TYPES[WRITE_COLUMNS.index(k)] for k in TIMING_KEYS)]),
)  # fmt: skip
_BOUNDS = {f"b_{m}": list(BOUNDS[m]) for m in ROLLUP_METRICS}
_AT = {c: i for i, c in enumerate(WRITE_COLUMNS)}
_TIME, _RUN, _ENDPOINT, _DIRECTION, _GROUP = (
    _AT[c] for c in ("time", "run_id", "endpoint_id", "direction", "group_name")
)
# (metric, its column in a row, its bin bounds or None): what the SQL path unpivots.
_SPECS = tuple((m, _AT[m], BOUNDS[m]) for m in ROLLUP_METRICS) + tuple(
    (m, _AT[m], None) for m in COUNTED_ONLY if m != "samples"
)
_timing_cells = operator.itemgetter(*(_AT[k] for k in TIMING_KEYS))


def rollup_deltas(
    rows: Sequence[tuple[Any, ...]],
) -> tuple[list[tuple[Any, ...]], ...]:
    """What rows (WRITE_COLUMNS order, none stored before) add to each rollup table:
    (second, endpoint, hist, timings) rows, one per key, in the tables' column order.
    The same figures the SQL rollup (_ROLLUPS) computes from the rows it stored."""
    by_second: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    by_endpoint: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    newest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in rows:
        key = (row[_RUN], row[_ENDPOINT])
        # The newest sample of each endpoint; at equal times 'recv' (as ORDER BY direction).
        best = newest.get(key)
        if best is None or (row[_TIME], row[_DIRECTION] == "recv") > (
            best[_TIME],
            best[_DIRECTION] == "recv",
        ):
            newest[key] = row
        if row[_DIRECTION] == "recv":
            by_endpoint[key].append(row)
            t = row[_TIME]
            second = t.replace(microsecond=0) if t.microsecond else t
            by_second[(row[_RUN], row[_GROUP], second)].append(row)
    seconds: list[tuple[Any, ...]] = []
    for (run, group, second), recv in by_second.items():
        seconds.append((run, group, second, "samples", len(recv), float(len(recv)), 1.0, 1.0))
        for metric, at, _ in _SPECS:
            values = [float(v) for r in recv if (v := r[at]) is not None]
            if values:
                seconds.append(
                    (run, group, second, metric, len(values), sum(values), min(values), max(values))
                )
    endpoints: list[tuple[Any, ...]] = []
    hist: list[tuple[Any, ...]] = []
    for (run, endpoint), recv in by_endpoint.items():
        group = recv[0][_GROUP]
        endpoints.append((run, endpoint, "samples", group, len(recv), float(len(recv)), 1.0, 1.0))
        for metric, at, bounds in _SPECS:
            values = [float(v) for r in recv if (v := r[at]) is not None]
            if not values:
                continue
            endpoints.append(
                (run, endpoint, metric, group, len(values), sum(values), min(values), max(values))
            )
            if bounds is not None:
                # Bin i holds bounds[i] <= v < bounds[i+1]; below bounds[0]: bin 0.
                bins = Counter([bisect_right(bounds, v) or 1 for v in values])
                hist += [(run, endpoint, metric, b - 1, group, n) for b, n in bins.items()]
    timings = [
        (run, endpoint, row[_GROUP], row[_TIME], *_timing_cells(row))
        for (run, endpoint), row in newest.items()
    ]
    return seconds, endpoints, hist, timings


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
    deltas = rollup_deltas(rows)
    with conn.transaction():
        conn.execute(_TIMINGS_TABLE)
        with conn.cursor() as cur:
            copy_rows(cur, _COPY_DIRECT, WRITE_TYPES, rows)
            for (statement, types), delta in zip(_COPY_DELTAS, deltas, strict=True):
                if delta:
                    copy_rows(cur, statement, types, delta)
            cur.execute(_APPLY_TIMINGS)
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
