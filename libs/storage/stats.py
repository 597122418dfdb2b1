"""Quality statistics of a run, answered from the rollups ingest maintains: the one
statistics module the API, the pages, the threshold evaluator and JUnit (through the
API) read. Pure shaping lives in quality.py (directions, headline, threshold values)
and rollup.py (bins, percentiles).

Nothing here scans metric_samples except `endpoint_series` (one endpoint's
rows, by primary key). Run and group figures come from rollup_second (a few
rows per second of the run), endpoint figures from rollup_endpoint, and
percentiles from rollup_hist bins (see rollup.py for their precision). Each
rollup is a view over folded rows and the deltas not folded yet
(compaction.py), so every query sums per key. The same rollups exist in both
storage modes, so the figures are the same in both.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from callmeter_vocabulary.metrics import BY_KEY

from . import quality
from .rollup import ROLLUP_METRICS, bin_of, bin_value

Level = Literal["run", "group", "endpoint"]
# Where each level's n/sum/min/max live, and the column that names its rows.
_STATS = {
    "run": (
        "SELECT '', metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
        " WHERE run_id = %s GROUP BY metric"
    ),
    "group": (
        "SELECT group_name, metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
        " WHERE run_id = %s GROUP BY group_name, metric"
    ),
    "endpoint": (
        "SELECT endpoint_id, metric, sum(n), sum(total), min(lo), max(hi)"
        " FROM rollup_endpoint WHERE run_id = %s GROUP BY endpoint_id, metric"
    ),
}
_HIST_KEY = {"run": "''", "group": "group_name", "endpoint": "endpoint_id"}


def histograms(
    conn: psycopg.Connection[Any], run_id: str, level: Level
) -> dict[str, dict[str, dict[int, int]]]:
    """{row key: {metric: {bin: count}}} for the run, summed up to `level`."""
    out: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for name, metric, index, n in _hist_rows(conn, run_id, level):
        out[name][metric][int(index)] = int(n)
    return out


def _hist_rows(conn: psycopg.Connection[Any], run_id: str, level: Level) -> list[tuple[Any, ...]]:
    key = _HIST_KEY[level]
    return conn.execute(
        f"SELECT {key}, metric, bin, sum(n) FROM rollup_hist WHERE run_id = %s"
        f" GROUP BY {'' if level == 'run' else key + ', '}metric, bin",
        (run_id,),
    ).fetchall()


def metric_stats(
    conn: psycopg.Connection[Any], run_id: str, level: Level = "run"
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """{row key: {metric: {n, sum, avg, min, max, p50, p95, p99 (MOS also p5)}}, plus
    "loss" (quality.figures); row key "" for the run. Receive side only, every
    direction together: run-level figures that must not mix directions come from
    run_quality.

    mos, jitter_ms, fraction_lost, rtt_ms get percentiles (within [min, max]); the
    counters (samples, packets, packets_lost, packet_rate_ps) get n/sum/avg/min/max.
    """
    rows = conn.execute(_STATS[level], (run_id,)).fetchall()
    accs = quality.accumulate(rows, _hist_rows(conn, run_id, level))
    return {name: quality.figures(per) for name, per in accs.items()}


def run_definition(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    """The test definition a run was started with (the runs read model), or None."""
    row = conn.execute("SELECT doc->'definition' FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def run_quality(
    conn: psycopg.Connection[Any],
    run_id: str,
    definition: dict[str, Any] | None = None,
    until: datetime | None = None,
    groups: bool = False,
) -> dict[str, Any]:
    """The run's quality per direction (quality.py) and its headline, from the group rollups:

    {"directions": {"send": figures, "recv": figures}, "worst": figures,
     "group_direction": {group: "send" | "recv" | None}}, and with `groups` also
    {"groups": {group: figures}}.

    A group whose direction is unknown (no definition, an idle group) counts as a
    direction of its own, "group:<name>": compared, never averaged with the others.
    `until`: only the seconds up to that time (a replay's moment); the bins have no
    time, so percentiles are null then.
    """
    definition = run_definition(conn, run_id) if definition is None else definition
    direction_of = _direction_of(definition)
    out: dict[str, Any] = {"group_direction": direction_of}
    if groups:  # per group, then summed into the directions
        rows = conn.execute(_STATS["group"], (run_id,)).fetchall()
        per_group = quality.accumulate(rows, _hist_rows(conn, run_id, "group"))
        key_of = {g: direction_of.get(g) or f"group:{g}" for g in per_group}
        accs = quality.combine(per_group, key_of)
        out["groups"] = {g: quality.figures(per) for g, per in per_group.items()}
    else:  # summed per direction by the database: fewer rows to fold here
        sides = _sides(conn, run_id, definition, until)
        rows = conn.execute(_SIDE_STATS_UNTIL if until else _SIDE_STATS, sides).fetchall()
        hist = [] if until else conn.execute(_SIDE_HIST, sides).fetchall()
        accs = quality.accumulate(rows, hist)
    directions = {k: quality.figures(per) for k, per in accs.items()}
    out["directions"] = directions
    out["worst"] = quality.headline(directions)
    return out


def _direction_of(definition: dict[str, Any] | None) -> dict[str, str | None]:
    names = [g["name"] for g in (definition or {}).get("groups", [])]
    return {g: quality.receive_direction(definition, g) for g in names}


def _sides(
    conn: psycopg.Connection[Any],
    run_id: str,
    definition: dict[str, Any] | None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The parameters of _SIDE: the groups each direction's rows come from."""
    definition = run_definition(conn, run_id) if definition is None else definition
    direction_of = _direction_of(definition)
    return {
        "run": run_id,
        "until": until,
        "send": [g for g, d in direction_of.items() if d == quality.SEND],
        "recv": [g for g, d in direction_of.items() if d == quality.RECV],
    }


# The direction a group's rows count for (quality.receive_direction), in SQL.
_SIDE = (
    "CASE WHEN group_name = ANY(%(send)s) THEN 'send' WHEN group_name = ANY(%(recv)s)"
    " THEN 'recv' ELSE 'group:' || group_name END"
)
_SIDE_STATS = (
    f"SELECT {_SIDE}, metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
    " WHERE run_id = %(run)s GROUP BY 1, 2"
)
_SIDE_STATS_UNTIL = (
    f"SELECT {_SIDE}, metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
    " WHERE run_id = %(run)s AND second <= %(until)s GROUP BY 1, 2"
)
_SIDE_HIST = (
    f"SELECT {_SIDE}, metric, bin, sum(n) FROM rollup_hist WHERE run_id = %(run)s GROUP BY 1, 2, 3"
)


# Callers' per-call timings (the endpoints read model), the 95th percentile thresholds use.
_CALLER_TIMINGS = """
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY (doc->>'post_dial_delay_ms')::float8),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (doc->>'call_setup_ms')::float8)
FROM endpoints WHERE run_id = %s AND doc->>'role' = 'caller'
"""


# PESQ MOS-LQO of the run's scored calls (the endpoints read model; SpeechQualityMeasured).
_SPEECH_SCORES = (
    "SELECT (doc->>'mos_lqo')::float8 FROM endpoints"
    " WHERE run_id = %s AND doc->>'mos_lqo' IS NOT NULL"
)


def speech_figures(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """quality.speech_figures of the run's scored calls: null figures when none was scored."""
    return quality.speech_figures(r[0] for r in conn.execute(_SPEECH_SCORES, (run_id,)))


def threshold_values(
    conn: psycopg.Connection[Any], run_id: str, definition: dict[str, Any] | None = None
) -> dict[str, float | None]:
    """Quality and timing values thresholds are judged on (callmeter_events.thresholds):
    the same figures as run_quality and speech_figures, so a CI verdict and the results
    page agree."""
    q = run_quality(conn, run_id, definition)
    values = quality.threshold_values(q["worst"], q["directions"], speech_figures(conn, run_id))
    row = conn.execute(_CALLER_TIMINGS, (run_id,)).fetchone() or (None, None)
    values["post_dial_delay_p95_ms"] = None if row[0] is None else float(row[0])
    values["call_setup_p95_ms"] = None if row[1] is None else float(row[1])
    return values


_WINDOW_METRICS = ("mos", "jitter_ms", "fraction_lost", "rtt_ms", "packets", "packets_lost")
_WINDOW_ROWS = (
    "SELECT group_name, " + ", ".join(_WINDOW_METRICS) + " FROM metric_samples"
    " WHERE run_id = %s AND direction = 'recv' AND time >= %s AND time < %s"
)


def window_threshold_values(
    conn: psycopg.Connection[Any],
    run_id: str,
    definition: dict[str, Any],
    since: datetime,
    until: datetime,
) -> dict[str, float | None]:
    """The quality threshold values (as threshold_values) of the seconds in [since,
    until) only: one step of a capacity search. The rollups have no time in their bins,
    so the window's receive-side samples are read (a step's few rows per endpoint) and
    binned as ingest bins them; the same directions, headline and percentiles follow."""
    names = [g["name"] for g in definition.get("groups", [])]
    direction_of = {g: quality.receive_direction(definition, g) for g in names}
    rows, hist = [], []
    for group, *values in conn.execute(_WINDOW_ROWS, (run_id, since, until)).fetchall():
        key = direction_of.get(group) or f"group:{group}"
        rows.append((key, "samples", 1, 1.0, 1.0, 1.0))
        for metric, value in zip(_WINDOW_METRICS, values, strict=True):
            if value is None:
                continue
            rows.append((key, metric, 1, float(value), float(value), float(value)))
            if metric in ROLLUP_METRICS:
                hist.append((key, metric, bin_of(metric, float(value)), 1))
    accs = quality.accumulate(rows, hist)
    directions = {k: quality.figures(per) for k, per in accs.items()}
    return quality.threshold_values(quality.headline(directions), directions)


def mos_histogram(
    conn: psycopg.Connection[Any],
    run_id: str,
    definition: dict[str, Any] | None = None,
    width: float = 0.1,
) -> dict[str, list[dict[str, float | int]]]:
    """Per direction (as run_quality: "send", "recv", or "group:<name>" when a group's
    direction is unknown), the receive-side MOS counts in `width`-wide buckets from 1.0
    to 4.5 (empty ones too). Never both directions in one histogram: a good direction
    would hide a bad one."""
    sides = _sides(conn, run_id, definition)
    rows = conn.execute(
        f"SELECT {_SIDE}, bin, sum(n) FROM rollup_hist WHERE run_id = %(run)s AND metric = 'mos'"
        " GROUP BY 1, 2",
        sides,
    ).fetchall()
    buckets = round(3.5 / width)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * buckets)
    for side, index, n in rows:
        value = bin_value("mos", int(index))
        counts[side][min(buckets - 1, int((value - 1.0) / width))] += int(n)
    return {
        side: [
            {"lo": round(1.0 + i * width, 3), "hi": round(1.0 + (i + 1) * width, 3), "count": c}
            for i, c in enumerate(per)
        ]
        for side, per in sorted(counts.items())
    }


def success_rates(
    conn: psycopg.Connection[Any], run_id: str, by_group: bool = False
) -> dict[str, dict[str, Any]]:
    """The run's success rates (quality.success_rates, in percent) from the endpoints
    read model, for the run ("") or per group."""
    rows = conn.execute(
        "SELECT group_name, doc->>'role', phase, outcome, count(*) FROM endpoints"
        " WHERE run_id = %s GROUP BY 1, 2, 3, 4",
        (run_id,),
    ).fetchall()
    by: dict[str, list[tuple[Any, Any, Any, int]]] = defaultdict(list)
    for group, role, phase, outcome, n in rows:
        by[group if by_group else ""].append((role, phase, outcome, n))
    return {name: quality.success_rates(eps) for name, eps in by.items()}


def run_series(
    conn: psycopg.Connection[Any],
    run_id: str,
    group: str | None = None,
    bucket_s: int = 1,
    direction: str | None = None,
) -> list[dict[str, Any]]:
    """Per-second (or per `bucket_s`) n/avg/min/max of the quality metrics, for the run,
    one group or one direction (quality.py): [{"t": time, metric: {n, avg, min, max}}].
    date_bin over rollup_second, in both storage modes."""
    series = direction_series(conn, run_id, group, bucket_s)
    key = "all" if direction is None else direction
    return [{"t": p["t"], **p[key]} for p in series if key in p]


def direction_series(
    conn: psycopg.Connection[Any], run_id: str, group: str | None = None, bucket_s: int = 1
) -> list[dict[str, Any]]:
    """[{"t": time, "all": {metric: stats}, "send": {...}, "recv": {...}}] per bucket, from
    the groups' rows of rollup_second; a direction appears where it has samples."""
    where, args = ("AND group_name = %s", [group]) if group else ("", [])
    rows = conn.execute(
        "SELECT date_bin(make_interval(secs => %s), second, timestamptz 'epoch') AS t,"
        " group_name, metric, sum(n), sum(total), min(lo), max(hi) FROM rollup_second"
        " WHERE run_id = %s AND metric = ANY(%s) " + where + " GROUP BY 1, 2, 3 ORDER BY 1",
        [bucket_s, run_id, list(ROLLUP_METRICS), *args],
    ).fetchall()
    definition = run_definition(conn, run_id)
    direction_of = {g: quality.receive_direction(definition, g) for g in {r[1] for r in rows}}
    return quality.series(rows, direction_of)


def worst_series(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """[{"t": seconds since the first, metric: the worse direction's average}] for
    overlaying runs (compare): per second, as the headline is per run."""
    points = direction_series(conn, run_id)
    if not points:
        return []
    t0: datetime = points[0]["t"]
    out = []
    for p in points:
        sides = {d: p[d] for d in quality.DIRECTIONS if d in p} or {"all": p["all"]}
        worst = quality.headline(sides)
        out.append(
            {
                "t": int((p["t"] - t0).total_seconds()),
                **{m: worst.get(m, {}).get("avg") for m in ROLLUP_METRICS},
            }
        )
    return out


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
