"""Queries the API and UI answer from: run views and the metric summary."""

from __future__ import annotations

from typing import Any

import psycopg

from . import quality
from . import stats as stats_mod
from .rollup_deltas import endpoint_metric_sql


def run_row(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT doc FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def endpoint_rows(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT doc FROM endpoints WHERE run_id = %s"
        " ORDER BY group_name, length(endpoint_id), endpoint_id",
        (run_id,),
    ).fetchall()
    return [r[0] for r in rows]


def summary(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """Receive-side overview of a run from the rollups, null where there are no samples:
    each quality figure from the worse direction, and "send" / "recv" with the same keys
    for each direction (quality.py)."""
    return summary_of(stats_mod.run_quality(conn, run_id), stats_mod.speech_figures(conn, run_id))


def summary_of(q: dict[str, Any], speech: dict[str, Any] | None = None) -> dict[str, Any]:
    """The overview from run_quality's figures and, with `speech` (speech_figures), the
    PESQ MOS-LQO of the scored calls: mos_lqo (average), mos_lqo_min, mos_lqo_scored."""
    out = quality.summary(q["worst"])
    for direction in quality.DIRECTIONS:
        out[direction] = quality.summary(q["directions"].get(direction, {}))
    if speech is not None:
        out["mos_lqo"] = speech["avg"]
        out["mos_lqo_min"] = speech["min"]
        out["mos_lqo_scored"] = speech["scored"]
    return out


def samples_per_endpoint(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    """Receive-side samples stored per endpoint (from the rollup, not a scan)."""
    rows = conn.execute(
        f"SELECT endpoint_id, sum(n) FROM ({endpoint_metric_sql('samples')}) r GROUP BY endpoint_id",
        {"run_id": run_id},
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def list_runs(
    conn: psycopg.Connection[Any], test_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    where, args = ("WHERE test_id = %s", (test_id, limit)) if test_id else ("", (limit,))
    rows = conn.execute(
        f"SELECT doc FROM runs {where} ORDER BY created_at DESC LIMIT %s", args
    ).fetchall()
    return [r[0] for r in rows]


def list_tests(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT doc FROM tests WHERE NOT deleted ORDER BY updated_at DESC"
    ).fetchall()
    return [r[0] for r in rows]


def test_row(conn: psycopg.Connection[Any], test_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT doc FROM tests WHERE test_id = %s AND NOT deleted", (test_id,)
    ).fetchone()
    return row[0] if row else None


def outcomes(conn: psycopg.Connection[Any], run_id: str) -> dict[str, int]:
    """How many endpoints ended with each outcome (unfinished ones under "RUNNING")."""
    rows = conn.execute(
        "SELECT coalesce(outcome, 'RUNNING'), count(*) FROM endpoints WHERE run_id = %s"
        " GROUP BY 1 ORDER BY 1",
        (run_id,),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


DISTRIBUTED_TIMINGS = ("post_dial_delay_ms", "call_setup_ms", "time_to_register_ms")


def timing_distributions(
    conn: psycopg.Connection[Any], run_id: str, buckets: int = 10
) -> dict[str, dict[str, Any]]:
    """Per-call timings (call_timings: one row per endpoint, from its newest sample):
    n, min, max, avg, p50/p95/p99 and a `buckets`-bar histogram between min and max."""
    out: dict[str, dict[str, Any]] = {}
    for key in DISTRIBUTED_TIMINGS:  # fixed names from the catalogue, never user input
        row = conn.execute(
            f"SELECT count({key}), min({key}), max({key}), avg({key}),"
            f" percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {key})"
            f" FROM call_timings WHERE run_id = %s",
            (run_id,),
        ).fetchone()
        assert row is not None
        n, lo, hi, avg, pcts = row
        entry: dict[str, Any] = {"n": n, "min": lo, "max": hi, "avg": avg, "histogram": []}
        entry.update(zip(("p50", "p95", "p99"), pcts or (None, None, None), strict=True))
        if n:
            width = (hi - lo) / buckets or 1.0
            counts = conn.execute(
                f"SELECT least(floor(({key} - %s) / %s)::int, %s), count(*) FROM call_timings"
                f" WHERE run_id = %s AND {key} IS NOT NULL GROUP BY 1",
                (lo, width, buckets - 1, run_id),
            ).fetchall()
            by_bar = dict(counts)
            entry["histogram"] = [
                {"lo": lo + i * width, "hi": lo + (i + 1) * width, "count": by_bar.get(i, 0)}
                for i in range(buckets)
            ]
        out[key] = entry
    return out


_SPEECH = """
SELECT endpoint_id, group_name, (doc->>'mos_lqo')::float8, doc->>'mos_lqo_mode',
       doc->>'mos_lqo_error', doc->>'codec'
FROM endpoints WHERE run_id = %s
  AND (doc->>'mos_lqo' IS NOT NULL OR doc->>'mos_lqo_error' IS NOT NULL)
ORDER BY group_name, length(endpoint_id), endpoint_id
"""


def speech_quality(
    conn: psycopg.Connection[Any], run_id: str, endpoint_stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """PESQ MOS-LQO of the sampled receivers, each beside its E-model MOS (receive side,
    average over the call), and the run's summary of both over the scored calls."""
    if endpoint_stats is None:
        endpoint_stats = stats_mod.metric_stats(conn, run_id, "endpoint")
    endpoints = []
    for eid, group, lqo, mode, error, codec in conn.execute(_SPEECH, (run_id,)).fetchall():
        emodel = endpoint_stats.get(eid, {}).get("mos", {}).get("avg")
        endpoints.append(
            {
                "endpoint_id": eid,
                "group": group,
                "mos_lqo": lqo,
                "mode": mode,
                "codec": codec,
                "mos_emodel": emodel,
                "error": error,
            }
        )
    scored = [e for e in endpoints if e["mos_lqo"] is not None]
    lqo = quality.speech_figures(e["mos_lqo"] for e in scored)
    emodel = [e["mos_emodel"] for e in scored if e["mos_emodel"] is not None]
    return {
        "sampled": len(endpoints),
        "scored": lqo["scored"],
        "mos_lqo_avg": lqo["avg"],
        "mos_lqo_min": lqo["min"],
        "mos_lqo_max": lqo["max"],
        "mos_emodel_avg": sum(emodel) / len(emodel) if emodel else None,
        "endpoints": endpoints,
    }


def run_results(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """Everything the results page shows, from aggregates: run (its quality figures
    from the worse direction), directions, groups, endpoints."""
    rates = stats_mod.success_rates(conn, run_id)
    group_rates = stats_mod.success_rates(conn, run_id, by_group=True)
    q = stats_mod.run_quality(conn, run_id, groups=True)
    groups = q["groups"]
    endpoints = stats_mod.metric_stats(conn, run_id, "endpoint")
    return {
        "run_id": run_id,
        "run": {**rates.get("", {}), "metrics": q["worst"]},
        "directions": q["directions"],
        "outcomes": outcomes(conn, run_id),
        "groups": {
            name: {
                **group_rates.get(name, {}),
                "direction": q["group_direction"].get(name),
                "metrics": groups.get(name, {}),
            }
            for name in sorted(set(groups) | set(group_rates))
        },
        "endpoints": endpoints,
        "timings": timing_distributions(conn, run_id),
        "mos_histogram": stats_mod.mos_histogram(conn, run_id),
        "speech_quality": speech_quality(conn, run_id, endpoints),
    }
