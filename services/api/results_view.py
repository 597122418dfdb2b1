"""Results of a finished run as its page shows them: percentiles, outcome and SIP
code distributions, charts over time, MOS histogram.

`results_data` reads only aggregates (the rollups and call_timings, a few
hundred rows whatever the run's size); everything else here is pure shaping.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import psycopg

from callmeter_events import GOOD_OUTCOMES
from callmeter_storage import results, stats
from callmeter_vocabulary.metrics import DIRECTIONS

from .svg import Chart, Series, bar_chart, line_chart, paired_bars
from .views import THRESHOLDS, grade

# (rollup key, label, unit, digits, grade key, scale): loss is stored as a fraction.
QUALITY = (
    ("mos", "MOS", "", 2, "mos", 1.0),
    ("jitter_ms", "Jitter", "ms", 1, "jitter_ms", 1.0),
    ("fraction_lost", "Packet loss", "%", 2, "loss_pct", 100.0),
    ("rtt_ms", "RTT", "ms", 1, "rtt_ms", 1.0),
)
FIELDS = ("avg", "p50", "p95", "p99", "min", "max")
TIMINGS = {
    "time_to_register_ms": "Time to register",
    "post_dial_delay_ms": "Post-dial delay",
    "call_setup_ms": "Call setup",
}
REASONS = {
    200: "OK",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    407: "Proxy Auth Required",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    481: "Call Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
}
OK_OUTCOMES = GOOD_OUTCOMES


def results_data(conn: psycopg.Connection[Any], run_id: str, q: dict[str, Any]) -> dict[str, Any]:
    """The aggregates a finished run's results section needs, in one checkout; `q` is
    the run's stats.run_quality, which the run page has read already."""
    return {
        "metrics": q["worst"],
        "directions": q["directions"],
        "mos_histograms": stats.mos_histogram(conn, run_id),
        "timings": results.timing_distributions(conn, run_id),
        "rates": stats.success_rates(conn, run_id).get("", {}),
        "series": stats.direction_series(conn, run_id),
        "speech": results.speech_quality(conn, run_id),
    }


def speech_view(speech: dict[str, Any]) -> dict[str, Any] | None:
    """PESQ MOS-LQO beside the E-model MOS per sampled receiver; None when none sampled."""
    if not speech.get("sampled"):
        return None
    rows = [(e["endpoint_id"], e["mos_lqo"], e["mos_emodel"]) for e in speech["endpoints"]]
    chart = paired_bars(
        "Speech quality per sampled call (MOS)", rows, ("PESQ MOS-LQO", "E-model MOS (avg)")
    )
    return {**speech, "chart": chart}


# What each row of the percentile table stands for: the headline, then each direction.
SIDES = (
    ("worst", "worse direction"),
    ("send", "send: caller → callee"),
    ("recv", "recv: callee → caller"),
)


def percentile_rows(
    metrics: dict[str, dict[str, Any]], directions: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Per quality metric: a row with avg, p50/p95/p99, min, max in display units, graded,
    for the worse direction, then one per direction that has samples."""
    rows = []
    for key, label, unit, digits, grade_key, scale in QUALITY:
        for side, side_label in SIDES:
            figs = metrics if side == "worst" else (directions or {}).get(side)
            if figs is None or (side != "worst" and key not in figs):
                continue
            m = figs.get(key, {})
            values = {f: None if m.get(f) is None else float(m[f]) * scale for f in FIELDS}
            rows.append(
                {
                    "key": key,
                    "label": label,
                    "unit": unit,
                    "digits": digits,
                    "n": m.get("n") or 0,
                    "side": side,
                    "side_label": side_label,
                    "values": values,
                    "grades": {f: grade(grade_key, v) for f, v in values.items()},
                }
            )
    return rows


def timing_rows(timings: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "label": label,
            **{f: timings.get(key, {}).get(f) for f in ("n", "avg", "p50", "p95", "p99", "max")},
        }
        for key, label in TIMINGS.items()
    ]


def share(n: int, total: int) -> float:
    return 100.0 * n / total if total else 0.0


def outcome_rows(counts: dict[str, int], total: int) -> list[dict[str, Any]]:
    """Outcome, count, percent of all endpoints; unfinished endpoints as NOT_FINISHED."""
    rows = [
        {
            "outcome": o,
            "count": n,
            "pct": share(n, total),
            "cls": "st-good" if o in OK_OUTCOMES else "st-bad",
        }
        for o, n in counts.items()
    ]
    missing = total - sum(counts.values())
    if missing > 0:
        rows.append(
            {
                "outcome": "NOT_FINISHED",
                "count": missing,
                "pct": share(missing, total),
                "cls": "st-warn",
            }
        )
    return rows


def sip_code_rows(counts: Counter[int | None]) -> list[dict[str, Any]]:
    """Endpoints by final SIP response code (queries.sip_code_counts); endpoints that
    never got a final response count under "none"."""
    total = sum(counts.values())
    rows = []
    for code in sorted((c for c in counts if c is not None), key=int):
        c = int(code)
        cls = "st-good" if 200 <= c < 300 else ("st-warn" if c < 200 else "st-bad")
        rows.append(
            {
                "code": c,
                "reason": REASONS.get(c, ""),
                "count": counts[code],
                "pct": share(counts[code], total),
                "cls": cls,
            }
        )
    if counts.get(None):
        rows.append(
            {
                "code": None,
                "reason": "no final response",
                "count": counts[None],
                "pct": share(counts[None], total),
                "cls": "st-warn",
            }
        )
    return rows


def series_charts(series: list[dict[str, Any]]) -> list[str]:
    """MOS, jitter, loss and RTT per second: each direction's average (send: caller ->
    callee, recv: callee -> caller) and the worst endpoint's value, with the thresholds
    users judge by drawn as dashed lines. Points are stats.direction_series'."""
    if series:
        t0: datetime = series[0]["t"]
    charts = []
    for key, label, unit, _, grade_key, scale in QUALITY:
        good, bad, better = THRESHOLDS[grade_key]
        worst_field = "min" if better == "higher" else "max"

        def points(
            side: str, field: str, key: str = key, scale: float = scale
        ) -> list[tuple[float, Any]]:
            out: list[tuple[float, Any]] = []
            for p in series:
                v = ((p.get(side) or {}).get(key) or {}).get(field)
                out.append(((p["t"] - t0).total_seconds(), None if v is None else v * scale))
            return out

        lines = [
            Series(f"{side} average", points(side, "avg"))
            for side in DIRECTIONS
            if any(side in p for p in series)
        ]
        if not lines:  # no direction known (no definition): every receive side together
            lines = [Series("average", points("all", "avg"))]
        lines.append(Series(f"worst ({worst_field})", points("all", worst_field)))
        marks = ((f"good {good:g}", good, "#17803d"), (f"bad {bad:g}", bad, "#c53030"))
        chart = Chart(label, unit, lines, marks, y_min=0 if better == "lower" else None)
        charts.append(line_chart(chart))
    return charts


def mos_histogram_svg(buckets: list[dict[str, Any]], direction: str = "") -> str:
    """Per-second receive MOS of one direction in 0.1 buckets, coloured by the MOS
    thresholds."""
    bars = []
    for b in buckets:
        g = grade("mos", b["lo"])
        color = {"good": "#4ade80", "warn": "#fcd34d"}.get(g, "#f87171")
        bars.append((f"{b['lo']:.1f}", int(b["count"]), color))
    # Start at the first non-empty bucket below 3.0 so a good run's bars are readable.
    first = next((i for i, (_, n, _) in enumerate(bars) if n), 0)
    title = f"MOS histogram{', ' + direction if direction else ''} (seconds per 0.1 MOS)"
    return bar_chart(title, bars[min(first, 20) :])


def results_view(
    data: dict[str, Any], run: dict[str, Any], sip_codes: Counter[int | None]
) -> dict[str, Any]:
    """Everything the results section renders, from results_data, the run's header
    (views.run_header) and its endpoints counted by final SIP code."""
    rates = data.get("rates", {})
    return {
        "percentiles": percentile_rows(data.get("metrics", {}), data.get("directions")),
        "timings": timing_rows(data.get("timings", {})),
        "outcomes": outcome_rows(run["outcome_counts"], run["endpoint_count"]),
        "sip_codes": sip_code_rows(sip_codes),
        "charts": series_charts(data.get("series", [])),
        "mos_histograms": [
            mos_histogram_svg(buckets, dict(SIDES).get(side, side))
            for side, buckets in data.get("mos_histograms", {}).items()
        ],
        "registration_success_rate": rates.get("registration_success_rate"),
        "endpoints": run["endpoint_count"],
        "speech": speech_view(data.get("speech", {})),
    }
