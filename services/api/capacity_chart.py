"""The capacity search's chart on the run page: each judged step's load, passed or
failed, and the first stop condition's value per step against its limit. Pure."""

from __future__ import annotations

from typing import Any

from callmeter_events.thresholds import parse

from .svg import Chart, Series, bar_chart, line_chart

PASSED, FAILED = "#059669", "#dc2626"


def capacity_charts(capacity: dict[str, Any], conditions: list[str]) -> list[str]:
    steps = capacity["steps"]
    if not steps:
        return []
    in_cps = any(s.get("cps") is not None for s in steps)

    def load(s: dict[str, Any]) -> float:
        return float(s["cps"] if in_cps else s["calls"])

    unit = "calls/s" if in_cps else "calls"
    bars = [
        (f"step {s['step'] + 1}: {load(s):g} {unit}", load(s), PASSED if s["passed"] else FAILED)
        for s in steps
    ]
    what = "Calls per second" if in_cps else "Concurrent calls"
    out = [bar_chart(f"{what} per step (green passed, red failed)", bars)]
    if conditions:
        t = parse(conditions[0])
        points = [(load(s), s["metrics"].get(t.metric)) for s in steps]
        chart = Chart(
            title=f"{t.metric} per step, by {what.lower()}",
            series=[Series(t.metric, points)],
            marks=[(str(t), t.value, FAILED)],
            x_unit=unit,
        )
        out.append(line_chart(chart))
    return out
