"""A run's raw samples as CSV (streamed by COPY) or Parquet (pyarrow, in row groups)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import psycopg
from psycopg import sql

from callmeter_vocabulary.metrics import CATALOGUE

from .samples import COLUMNS

_SELECT = sql.SQL(
    "SELECT {} FROM metric_samples WHERE run_id = {} ORDER BY endpoint_id, direction, time"
)
_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)


def csv_chunks(conn: psycopg.Connection[Any], run_id: str) -> Iterator[bytes]:
    """CSV with a header row, as the server produces it: constant memory for any run size."""
    query = sql.SQL("COPY ({}) TO STDOUT (FORMAT CSV, HEADER)").format(
        _SELECT.format(_COLS, sql.Literal(run_id))
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            yield bytes(chunk)


def _arrow_schema() -> Any:
    import pyarrow as pa

    kinds = {"float": pa.float64(), "int": pa.int64(), "text": pa.string()}
    head = [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("endpoint_id", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("seq", pa.int32(), nullable=False),
        pa.field("group_name", pa.string()),
    ]
    return pa.schema(head + [pa.field(m.key, kinds[m.kind]) for m in CATALOGUE])


def write_parquet(
    conn: psycopg.Connection[Any], run_id: str, out: IO[bytes], rows_per_group: int = 20_000
) -> int:
    """Write the run's samples to `out` as Parquet; returns the number of rows.

    A server-side cursor feeds fixed-size row groups, so memory stays bounded.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema()
    total = 0
    with (
        conn.transaction(),
        conn.cursor(name="callmeter_export") as cur,
        pq.ParquetWriter(out, schema, compression="zstd") as writer,
    ):
        cur.execute(_SELECT.format(_COLS, sql.Literal(run_id)))
        while rows := cur.fetchmany(rows_per_group):
            columns = list(zip(*rows, strict=True))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            total += len(rows)
    return total
