"""Read queries the pages and the API need beyond callmeter_storage.results.

Each takes an open connection and returns plain data; the routes run them in
a worker thread through service.query.
"""

from __future__ import annotations

from typing import Any

import psycopg

from callmeter_storage import results

# Receive side: the listening quality each endpoint experienced, from the rollup
# ingest keeps (a few rows per endpoint), never a scan of the samples.
_MOS = (
    "SELECT endpoint_id, sum(total) / sum(n) FROM rollup_endpoint"
    " WHERE run_id = %s AND metric = 'mos' AND n > 0 GROUP BY endpoint_id"
)
SERIES_KEYS = ("mos", "jitter_ms", "fraction_lost", "rtt_ms", "bitrate_bps")


def mos_per_endpoint(conn: psycopg.Connection[Any], run_id: str) -> dict[str, float]:
    return {r[0]: float(r[1]) for r in conn.execute(_MOS, (run_id,)).fetchall()}


def run_overview(conn: psycopg.Connection[Any], run_id: str) -> tuple[Any, ...] | None:
    """Everything the run page shows, read in one connection checkout."""
    run = results.run_row(conn, run_id)
    if run is None:
        return None
    return (
        run,
        results.endpoint_rows(conn, run_id),
        results.summary(conn, run_id),
        mos_per_endpoint(conn, run_id),
    )


def endpoint_doc(conn: psycopg.Connection[Any], run_id: str, endpoint_id: str) -> Any:
    row = conn.execute(
        "SELECT doc FROM endpoints WHERE run_id = %s AND endpoint_id = %s", (run_id, endpoint_id)
    ).fetchone()
    return row[0] if row else None


def endpoint_series(
    conn: psycopg.Connection[Any], run_id: str, endpoint_id: str
) -> dict[str, list[dict[str, Any]]]:
    """Per-second samples of one endpoint by direction, keyed by seconds since its first."""
    rows = conn.execute(
        f"SELECT direction, extract(epoch FROM time), {', '.join(SERIES_KEYS)}"
        " FROM metric_samples WHERE run_id = %s AND endpoint_id = %s ORDER BY time",
        (run_id, endpoint_id),
    ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {"recv": [], "send": []}
    t0 = float(rows[0][1]) if rows else 0.0
    for direction, epoch, *values in rows:
        point = {"t": round(float(epoch) - t0, 3)}
        point.update(
            {k: None if v is None else float(v) for k, v in zip(SERIES_KEYS, values, strict=True)}
        )
        out[direction].append(point)
    return out


def page_runs(
    conn: psycopg.Connection[Any],
    test_id: str | None,
    limit: int,
    offset: int,
    project: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, one page, and the total; of one test, of one project, or all."""
    conds: list[str] = []
    args: list[Any] = []
    if test_id:
        conds.append("test_id = %s")
        args.append(test_id)
    if project is not None:
        conds.append("doc->'definition'->>'project' = %s")
        args.append(project)
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    total = conn.execute(f"SELECT count(*) FROM runs {where}", args).fetchone()
    rows = conn.execute(
        f"SELECT doc FROM runs {where} ORDER BY created_at DESC, run_id LIMIT %s OFFSET %s",
        [*args, limit, offset],
    ).fetchall()
    return [r[0] for r in rows], int(total[0]) if total else 0
