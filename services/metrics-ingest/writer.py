"""Idempotent batch writes: binary COPY into a staging table, then INSERT ... ON CONFLICT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from callmeter_storage.samples import COLUMNS, PG_TYPES

_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS samples_stage (LIKE metric_samples INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COPY = sql.SQL("COPY samples_stage ({}) FROM STDIN (FORMAT BINARY)").format(_COLS)
_MOVE = sql.SQL(
    "INSERT INTO metric_samples ({cols}) SELECT {cols} FROM samples_stage ON CONFLICT DO NOTHING"
).format(cols=_COLS)


def write_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows exactly once (redelivered rows are ignored); returns rows inserted."""
    with conn.transaction():
        conn.execute(_STAGE)
        with conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(list(PG_TYPES))
                for row in rows:
                    copy.write_row(row)
            cur.execute(_MOVE)
            return cur.rowcount
