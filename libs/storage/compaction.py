"""Folding the rollup deltas ingest appends into one row per key.

Ingest appends what each write adds to the rollups (rollup_*_delta: wide
rows, no key, so no upsert per row; rollup_deltas.py); this moves them into
rollup_*_folded, one narrow row per key, in one transaction: per table,
DELETE ... RETURNING the deltas the statement sees, unpivoted and summed per
key into an upsert. Rows appended by a
write that commits meanwhile are not seen, so they stay for the next fold:
nothing is counted twice or lost. The rollup_* views add folded and delta
rows, so a reader sees the same figures before and after a fold; folding
only keeps the views cheap to read.

One folder at a time (a transaction-level advisory try-lock): two ingest
processes folding at once would upsert the same keys in different orders.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .rollup_deltas import UNPIVOT

FOLD_LOCK = 727_003
_STATS_SET = (
    "n = t.n + EXCLUDED.n, total = t.total + EXCLUDED.total,"
    " lo = least(t.lo, EXCLUDED.lo), hi = greatest(t.hi, EXCLUDED.hi)"
)
# table: (its key, how its other columns fold, in column order; the upsert's SET)
_FOLDS: dict[str, tuple[str, str, str]] = {
    "rollup_second": (
        "run_id, group_name, second, metric",
        "sum(n), sum(total), min(lo), max(hi)",
        _STATS_SET,
    ),
    "rollup_endpoint": (
        "run_id, endpoint_id, metric",
        "min(group_name), sum(n), sum(total), min(lo), max(hi)",
        _STATS_SET,
    ),
    "rollup_hist": (
        "run_id, endpoint_id, metric, bin",
        "min(group_name), sum(n)",
        "n = t.n + EXCLUDED.n",
    ),
}
FOLD_STATEMENTS = tuple(
    f"WITH moved AS (DELETE FROM {table}_delta RETURNING *),"
    f" flat AS ({UNPIVOT[table].format(source='moved')})"
    f" INSERT INTO {table}_folded AS t SELECT {key}, {folds} FROM flat GROUP BY {key}"
    f" ON CONFLICT ({key}) DO UPDATE SET {update}"
    for table, (key, folds, update) in _FOLDS.items()
)


def fold_rollups(conn: psycopg.Connection[Any]) -> int | None:
    """Fold every delta row visible now; returns the folded rows written, or None if
    another session is folding (its fold covers what this one would have)."""
    written = 0
    with conn.transaction():
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (FOLD_LOCK,)).fetchone()
        if not row or not row[0]:
            return None
        for statement in FOLD_STATEMENTS:
            written += conn.execute(statement).rowcount
    return written
