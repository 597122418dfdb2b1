"""Idempotent batch writes, rows and rollups in one transaction.

Fast path (`write_new_rows`): binary COPY straight into metric_samples. As
every row is new there, the rollup deltas are computed in Python
(rollup_deltas.Rollup: one wide row per endpoint and write, and one per
group and second, not one per sample and metric) and COPYed into the append-only rollup_*_delta tables
(compaction.py folds them later; the rollup_* views add both). If any row is
already stored (a redelivery after a crash or a lost ack), the COPY fails on
the primary key, the transaction is rolled back, and the batch takes the
conflict-tolerant path (`write_staged`): COPY into a staging table, then
INSERT ... ON CONFLICT DO NOTHING RETURNING the rows stored for the first
time, whose deltas the same deltas_of computes. One rollup computation for
both paths; either way a redelivered sample changes neither metric_samples
nor any aggregate, and the common case costs a raw COPY plus small appended
COPYs: no upsert per rollup row (call_timings, one row per endpoint, is the
one upsert).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar

import psycopg
from psycopg import postgres, pq, sql
from psycopg.abc import Buffer
from psycopg.adapt import Dumper

from callmeter_storage.rollup_deltas import COPY_TYPES, Deltas, deltas_of
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


# The conflict-tolerant path: the rows this INSERT stored come back for their deltas.
_MOVE = sql.SQL(
    "INSERT INTO metric_samples ({cols}) SELECT {cols} FROM samples_stage"
    " ON CONFLICT DO NOTHING RETURNING {cols}"
).format(cols=_COLS)
# The rollup deltas are appended with a COPY each; call timings (one row per
# endpoint) go as column arrays into one upsert (a temporary table cost more: it
# is truncated at every commit).
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


class _IntArrayDumper(Dumper):
    """A list of non-null integers as a one-dimensional PostgreSQL array, binary, in one
    struct.pack: the histogram deltas' bins and counts (psycopg's generic list dumper
    works element by element in Python and cost ingest ~5 µs per sample there)."""

    format = pq.Format.BINARY
    element: ClassVar[tuple[int, str, int]]  # (element oid, struct code, size)

    def dump(self, obj: Any) -> Buffer:
        element_oid, code, size = self.element
        if not obj:
            return _EMPTY.pack(0, 0, element_oid)
        cells = [size] * (2 * len(obj))
        cells[1::2] = obj
        return _layout(code, len(obj)).pack(1, 0, element_oid, len(obj), 1, *cells)


_EMPTY = struct.Struct(">3i")


@lru_cache(maxsize=256)
def _layout(code: str, n: int) -> struct.Struct:
    """ndim, has nulls, element oid, length, lower bound; then (size, value) per element."""
    return struct.Struct(">5i" + ("i" + code) * n)


_ARRAY_DUMPERS: list[type[Dumper]] = [
    type(
        f"_{name.capitalize()}ArrayDumper",
        (_IntArrayDumper,),
        {"oid": postgres.types[name].array_oid, "element": (postgres.types[name].oid, code, size)},
    )
    for name, code, size in (("int2", "h", 2), ("int8", "q", 8))
]


def copy_rows(
    cur: psycopg.Cursor[Any], statement: Any, types: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """One binary COPY of `rows` with the given column types."""
    for dumper in _ARRAY_DUMPERS:
        cur.adapters.register_dumper(None, dumper)  # by oid only: what set_types looks up
    with cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def write_new_rows(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]], deltas: Deltas | None = None
) -> int:
    """Store rows none of which is stored yet; raises UniqueViolation (and stores
    nothing) if one is. Rows are in WRITE_COLUMNS order; `deltas`, if given, are
    theirs (deltas_of), computed ahead."""
    if deltas is None:
        deltas = deltas_of(rows)
    with conn.transaction(), conn.cursor() as cur:
        copy_rows(cur, _COPY_DIRECT, WRITE_TYPES, rows)
        _append_rollups(cur, deltas)
    return len(rows)


def _append_rollups(cur: psycopg.Cursor[Any], deltas: Deltas) -> None:
    """The rollup deltas and call timings of rows stored in this transaction."""
    for (statement, types), delta in zip(
        _COPY_DELTAS, (deltas.second, deltas.endpoint, deltas.hist), strict=True
    ):
        if delta:
            copy_rows(cur, statement, types, delta)
    if deltas.timings:
        cur.execute(_APPLY_TIMINGS, [list(column) for column in zip(*deltas.timings, strict=True)])


def store_rows(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]], deltas: Deltas | None = None
) -> int:
    """Store rows (WRITE_COLUMNS order) exactly once; returns rows inserted. `deltas`:
    the rows' rollup deltas if computed ahead (used only if none is stored yet)."""
    try:
        return write_new_rows(conn, rows, deltas)
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
            cur.execute(_MOVE)
            stored = cur.fetchall()
            _append_rollups(cur, deltas_of(stored))
            return len(stored)
