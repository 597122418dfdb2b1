"""The shape of the rollup deltas ingest appends, and the SQL that reads them. No I/O.

A rollup table (rollup_second, rollup_endpoint, rollup_hist) keeps one narrow
row per key and metric: (..., metric, n, total, lo, hi) or (..., metric, bin, n).
What a write adds is appended instead as *wide* rows, one per key with every
metric in columns: one row per endpoint and write instead of one per endpoint,
write and metric (8 of them), and one histogram row per endpoint and write
holding each binned metric's bins and their counts as two arrays, instead of
one row per endpoint, metric and bin (the combination of the four bins per row
it replaces cost one row per receive sample). Appending few wide rows is what
makes a write cheap; `UNPIVOT` turns them back into the narrow rows, for the
rollup_* views (folded rows + unpivoted deltas) and for the fold
(compaction.py), so readers only ever see the narrow shape.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from .rollup import BOUNDS, COUNTED_ONLY, ROLLUP_METRICS
from .samples import TIMING_KEYS, WRITE_COLUMNS

# Summed (n, sum, min, max) per key; "samples" is the count of receive samples.
STAT_METRICS: tuple[str, ...] = ROLLUP_METRICS + tuple(m for m in COUNTED_ONLY if m != "samples")
# Binned per endpoint: one bin column per metric.
BINNED_METRICS: tuple[str, ...] = ROLLUP_METRICS

_STAT_COLUMNS = "".join(
    f", {m}_n bigint NOT NULL, {m}_sum double precision, {m}_lo double precision,"
    f" {m}_hi double precision"
    for m in STAT_METRICS
)
DELTA_TABLES: dict[str, str] = {
    "rollup_second_delta": "run_id text NOT NULL, group_name text NOT NULL,"
    " second timestamptz NOT NULL, samples bigint NOT NULL" + _STAT_COLUMNS,
    "rollup_endpoint_delta": "run_id text NOT NULL, endpoint_id text NOT NULL,"
    " group_name text NOT NULL, samples bigint NOT NULL" + _STAT_COLUMNS,
    # Per binned metric, its bins and how many samples fell in each, as parallel arrays.
    "rollup_hist_delta": "run_id text NOT NULL, endpoint_id text NOT NULL,"
    " group_name text NOT NULL, "
    + ", ".join(f"{m}_bins smallint[] NOT NULL, {m}_ns bigint[] NOT NULL" for m in BINNED_METRICS),
}
# Binary COPY types of the delta tables' columns, in order.
_STAT_TYPES = ["int8", "float8", "float8", "float8"] * len(STAT_METRICS)
COPY_TYPES: dict[str, list[str]] = {
    "rollup_second_delta": ["text", "text", "timestamptz", "int8", *_STAT_TYPES],
    "rollup_endpoint_delta": ["text", "text", "text", "int8", *_STAT_TYPES],
    "rollup_hist_delta": ["text", "text", "text", *["int2[]", "int8[]"] * len(BINNED_METRICS)],
}


# One (metric, n, total, lo, hi) row per summed metric of a wide delta row `d`.
_STAT_VALUES = ", ".join(
    ["('samples', d.samples, d.samples::float8, 1.0::float8, 1.0::float8)"]
    + [f"('{m}', d.{m}_n, d.{m}_sum, d.{m}_lo, d.{m}_hi)" for m in STAT_METRICS]
)


# SELECT lists producing each rollup table's narrow rows, in its column order,
# from a relation `d` holding wide delta rows.
UNPIVOT: dict[str, str] = {
    "rollup_second": "SELECT d.run_id, d.group_name, d.second, m.metric, m.n, m.total, m.lo, m.hi"
    f" FROM {{source}} d CROSS JOIN LATERAL (VALUES {_STAT_VALUES})"
    " AS m(metric, n, total, lo, hi) WHERE m.n > 0",
    "rollup_endpoint": "SELECT d.run_id, d.endpoint_id, m.metric, d.group_name, m.n, m.total,"
    f" m.lo, m.hi FROM {{source}} d CROSS JOIN LATERAL (VALUES {_STAT_VALUES})"
    " AS m(metric, n, total, lo, hi) WHERE m.n > 0",
    "rollup_hist": "SELECT d.run_id, d.endpoint_id, m.metric, m.bin, d.group_name, m.n"
    " FROM {source} d CROSS JOIN LATERAL ("
    + " UNION ALL ".join(
        f"SELECT '{m}'::text AS metric, u.bin, u.n FROM unnest(d.{m}_bins, d.{m}_ns) AS u(bin, n)"
        for m in BINNED_METRICS
    )
    + ") AS m",
}


def view_sql(table: str) -> str:
    """The rollup_* view: folded rows and the deltas not folded yet, as narrow rows."""
    unpivoted = UNPIVOT[table].format(source=f"{table}_delta")
    return f"CREATE VIEW {table} AS SELECT * FROM {table}_folded UNION ALL {unpivoted}"


def endpoint_metric_sql(metric: str) -> str:
    """The rows (endpoint_id, n, total) of one metric of run %(run_id)s, as the
    rollup_endpoint view has them, read from the folded table and that metric's
    columns of the deltas: the view unpivots every metric of every delta row before
    it can filter on one (6-8 times slower on 3,000 endpoints with 20 deltas each)."""
    n, total = (
        ("samples", "samples::float8") if metric == "samples" else (f"{metric}_n", f"{metric}_sum")
    )
    if metric != "samples" and metric not in STAT_METRICS:
        raise ValueError(f"no rollup of {metric!r}")
    return (
        "SELECT endpoint_id, n, total FROM rollup_endpoint_folded"
        f" WHERE run_id = %(run_id)s AND metric = '{metric}' AND n > 0 UNION ALL"
        f" SELECT endpoint_id, {n}, {total} FROM rollup_endpoint_delta"
        f" WHERE run_id = %(run_id)s AND {n} > 0"
    )


class Deltas(NamedTuple):
    """What a write adds, as rows of rollup_{second,endpoint,hist}_delta and of
    call_timings (the newest sample of each endpoint), in their column order."""

    second: list[tuple[Any, ...]]
    endpoint: list[tuple[Any, ...]]
    hist: list[tuple[Any, ...]]
    timings: list[tuple[Any, ...]]


_AT = {c: i for i, c in enumerate(WRITE_COLUMNS)}
_TIME, _RUN, _ENDPOINT, _DIRECTION, _GROUP = (
    _AT[c] for c in ("time", "run_id", "endpoint_id", "direction", "group_name")
)
_stat_cells = operator.itemgetter(*(_AT[m] for m in STAT_METRICS))
_binned_cells = operator.itemgetter(*(_AT[m] for m in BINNED_METRICS))
_BIN_BOUNDS = tuple(BOUNDS[m] for m in BINNED_METRICS)
_timing_cells = operator.itemgetter(*(_AT[k] for k in TIMING_KEYS))
_time_of = operator.itemgetter(_TIME)


class Rollup:
    """The deltas of one write whose rows come in parts (ingest adds each fetch's rows
    as they are decoded, while the previous write is in flight): `add` only groups
    the rows by endpoint and direction; `deltas` computes them column by column, once
    per write, so a write appends one endpoint row per endpoint and one second row per
    group and second, however many parts its rows came in."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}

    def add(self, rows: Iterable[tuple[Any, ...]]) -> None:
        groups = self.groups
        for row in rows:
            key = (row[_RUN], row[_ENDPOINT], row[_DIRECTION])
            group = groups.get(key)
            if group is None:
                groups[key] = [row]
            else:
                group.append(row)

    def deltas(self) -> Deltas:
        """The deltas of all the rows added: receive-side samples only; the timings are
        the newest sample of each endpoint (at equal times 'recv', as ORDER BY direction)."""
        by_second: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
        by_endpoint: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        newest: dict[tuple[str, str], tuple[Any, ...]] = {}
        for (run, endpoint, direction), rows in self.groups.items():
            key = (run, endpoint)
            last = max(rows, key=_time_of)
            best = newest.get(key)
            if (
                best is None
                or last[_TIME] > best[_TIME]
                or (last[_TIME] == best[_TIME] and direction == "recv")
            ):
                newest[key] = last
            if direction != "recv":
                continue
            by_endpoint[key] = rows
            group = rows[0][_GROUP]
            for row in rows:
                t = row[_TIME]
                by_second[(run, group, t.replace(microsecond=0) if t.microsecond else t)].append(
                    row
                )
        hist: list[tuple[Any, ...]] = []
        for (run, endpoint), recv in by_endpoint.items():
            # Column by column: rollup.bin_of inlined (the hot path of every write).
            cells: list[list[int]] = []
            for column, bounds in zip(
                zip(*map(_binned_cells, recv), strict=True), _BIN_BOUNDS, strict=True
            ):
                counts = Counter(
                    [(bisect_right(bounds, v) or 1) - 1 for v in column if v is not None]
                )
                cells += (list(counts), list(counts.values()))
            if any(cells):
                hist.append((run, endpoint, recv[0][_GROUP], *cells))
        return Deltas(
            second=[(*key, len(recv), *_stats(recv)) for key, recv in by_second.items()],
            endpoint=[
                (run, endpoint, recv[0][_GROUP], len(recv), *_stats(recv))
                for (run, endpoint), recv in by_endpoint.items()
            ],
            hist=hist,
            # Sorted: upserts from ingest processes writing at once lock rows in one order.
            timings=[
                (run, endpoint, row[_GROUP], row[_TIME], *_timing_cells(row))
                for (run, endpoint), row in sorted(newest.items())
            ],
        )


def deltas_of(rows: Iterable[tuple[Any, ...]]) -> Deltas:
    """The deltas of rows (WRITE_COLUMNS order, none stored before). Both of ingest's
    write paths use it: the fast one on the rows it COPYs (through a Rollup, part by
    part), the conflict-tolerant one on the rows its INSERT stored."""
    rollup = Rollup()
    rollup.add(rows)
    return rollup.deltas()


def _stats(recv: list[tuple[Any, ...]]) -> list[Any]:
    """n, sum, min, max of each STAT_METRICS column over the rows (n 0 and nulls: none)."""
    out: list[Any] = []
    for column in zip(*map(_stat_cells, recv), strict=True):
        values = [v for v in column if v is not None]
        if values:
            out += (len(values), float(sum(values)), float(min(values)), float(max(values)))
        else:
            out += (0, None, None, None)
    return out
