"""Quality statistics of a run, answered from the rollups ingest maintains.

Nothing here scans metric_samples except `endpoint_series` (one endpoint's
rows, by primary key). Run and group figures come from rollup_second (a few
rows per second of the run), endpoint figures from rollup_endpoint, and
percentiles from rollup_hist bins (see rollup.py for their precision). Each
rollup is a view over folded rows and the deltas not folded yet
(compaction.py), so every query sums per key.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from callmeter_events.metrics_catalogue import BY_KEY

from . import timescale
from .rollup import ROLLUP_METRICS, bin_value, percentiles

Level = Literal["run", "group", "endpoint"]
# Where each level's n/sum/min/max live, and the column that names its rows.
_STATS = {
    "run": ("SELECT '', metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
            " WHERE run_id = %s GROUP BY metric"),
    "group": ("SELECT group_name, metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
              " WHERE run_id = %s GROUP BY group_name, metric"),
    "endpoint": ("SELECT endpoint_id, metric, sum(n), sum(total), min(lo), max(hi)"
                 " FROM rollup_endpoint WHERE run_id = %s GROUP BY endpoint_id, metric"),
}  # fmt: skip
_HIST_KEY = {"run": "''", "group": "group_name", "endpoint": "endpoint_id"}


def storage_mode(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT mode FROM storage_mode").fetchone()
    return str(row[0]) if row else "plain"


def histograms(
    conn: psycopg.Connection[Any], run_id: str, level: Level
) -> dict[str, dict[str, dict[int, int]]]:
    """{row key: {metric: {bin: count}}} for the run, summed up to `level`."""
    key = _HIST_KEY[level]
    rows = conn.execute(
        f"SELECT {key}, metric, bin, sum(n) FROM rollup_hist WHERE run_id = %s"
        f" GROUP BY {'' if level == 'run' else key + ', '}metric, bin",
        (run_id,),
    ).fetchall()
    out: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for name, metric, index, n in rows:
        out[name][metric][int(index)] = int(n)
    return out


def metric_stats(
    conn: psycopg.Connection[Any],
    run_id: str,
    level: Level = "run",
    hists: dict[str, dict[str, dict[int, int]]] | None = None,
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """{row key: {metric: {n, avg, min, max, p50, p95, p99}}}; row key "" for the run.

    Receive side: mos, jitter_ms, fraction_lost, rtt_ms get percentiles; the
    counters (samples, packets, packets_lost, packet_rate_ps) get n/avg/min/max/sum.
    """
    hists = histograms(conn, run_id, level) if hists is None else hists
    out: dict[str, dict[str, dict[str, float | int | None]]] = defaultdict(dict)
    for name, metric, n, total, lo, hi in conn.execute(_STATS[level], (run_id,)).fetchall():
        n = int(n)
        entry: dict[str, float | int | None] = {
            "n": n, "sum": float(total), "avg": float(total) / n if n else None,
            "min": lo, "max": hi,
        }  # fmt: skip
        if metric in ROLLUP_METRICS:
            entry.update(percentiles(metric, hists.get(name, {}).get(metric, {})))
        out[name][metric] = entry
    return dict(out)


def mos_histogram(
    conn: psycopg.Connection[Any], run_id: str, group: str | None = None, width: float = 0.1
) -> list[dict[str, float | int]]:
    """Receive-side MOS counts in `width`-wide buckets from 1.0 to 4.5 (empty ones too)."""
    where, args = ("AND group_name = %s", (run_id, group)) if group else ("", (run_id,))
    rows = conn.execute(
        "SELECT bin, sum(n) FROM rollup_hist WHERE run_id = %s AND metric = 'mos' "
        + where
        + " GROUP BY bin",
        args,
    ).fetchall()
    buckets = round(3.5 / width)
    counts = [0] * buckets
    for index, n in rows:
        value = bin_value("mos", int(index))
        counts[min(buckets - 1, int((value - 1.0) / width))] += int(n)
    return [
        {"lo": round(1.0 + i * width, 3), "hi": round(1.0 + (i + 1) * width, 3), "count": c}
        for i, c in enumerate(counts)
    ]


def run_series(
    conn: psycopg.Connection[Any], run_id: str, group: str | None = None, bucket_s: int = 1
) -> list[dict[str, Any]]:
    """Per-second (or per `bucket_s`) n/avg/min/max of the quality metrics, for the run
    or one group: date_bin over rollup_second in plain mode, the continuous
    aggregates in TimescaleDB mode (per-second buckets)."""
    if storage_mode(conn) == "timescaledb" and bucket_s == 1:
        rows = timescale.run_series(conn, run_id, group)
    else:
        where, args = ("AND group_name = %s", [run_id, group]) if group else ("", [run_id])
        rows = conn.execute(
            "SELECT date_bin(make_interval(secs => %s), second, timestamptz 'epoch') AS t,"
            " metric, sum(n), sum(total) / sum(n), min(lo), max(hi) FROM rollup_second"
            " WHERE run_id = %s AND metric = ANY(%s) " + where + " GROUP BY t, metric ORDER BY t",
            [bucket_s, args[0], list(ROLLUP_METRICS), *args[1:]],
        ).fetchall()
    points: dict[datetime, dict[str, Any]] = {}
    for t, metric, n, avg, lo, hi in rows:
        point = points.setdefault(t, {"t": t})
        point[metric] = {"n": int(n), "avg": avg, "min": lo, "max": hi}
    return [points[t] for t in sorted(points)]


def endpoint_series(
    conn: psycopg.Connection[Any],
    run_id: str,
    endpoint_id: str,
    key: str,
    direction: Literal["send", "recv"] = "recv",
) -> list[tuple[datetime, Any]]:
    """(time, value) of one catalogue key for one endpoint and direction, in time order.

    The key is checked against the catalogue and quoted as an identifier: a name
    from a URL never reaches the SQL text otherwise.
    """
    if key not in BY_KEY:
        raise KeyError(f"unknown metric key {key!r}")
    if direction not in ("send", "recv"):
        raise ValueError(f"direction must be send or recv, not {direction!r}")
    query = sql.SQL(
        "SELECT time, {} FROM metric_samples WHERE run_id = %s AND endpoint_id = %s"
        " AND direction = %s ORDER BY time"
    ).format(sql.Identifier(key))
    return [(r[0], r[1]) for r in conn.execute(query, (run_id, endpoint_id, direction))]
