"""Endpoint detail: SIP timeline and ladder, per-second charts, the paired endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from .deps import PlatformDep
from .details import endpoint_detail
from .pages import render
from .svg import Chart, Series, line_chart

router = APIRouter(include_in_schema=False)

# (title, key, unit, scale, judge-by marks) per chart; fraction_lost is shown in percent.
CHARTS: tuple[tuple[str, str, str, float, tuple[tuple[str, float, str], ...]], ...] = (
    ("MOS", "mos", "", 1.0, (("acceptable 3.5", 3.5, "#17803d"), ("problem 3.0", 3.0, "#c53030"))),
    ("Jitter", "jitter_ms", "ms", 1.0, (("audible 50 ms", 50.0, "#c53030"),)),
    ("Packet loss", "fraction_lost", "%", 100.0, (("degrading 3 %", 3.0, "#c53030"),)),
    ("RTT", "rtt_ms", "ms", 1.0, (("hard to converse 300 ms", 300.0, "#c53030"),)),
    ("Bitrate", "bitrate_bps", "kbit/s", 0.001, ()),
)


def charts(series: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One SVG per metric, receive and send directions overlaid."""
    out = []
    for title, key, unit, scale, marks in CHARTS:
        lines = [
            Series(
                direction,
                [(p["t"], None if p[key] is None else p[key] * scale) for p in points],
                color,
            )
            for direction, color in (("recv", "#2563eb"), ("send", "#d97706"))
            if (points := series.get(direction))
        ]
        y_min = 1.0 if key == "mos" else 0.0
        y_max = 4.5 if key == "mos" else None
        out.append(line_chart(Chart(title, unit, lines, marks, y_min, y_max)))
    return out


@router.get("/runs/{run_id}/endpoints/{endpoint_id}", response_class=HTMLResponse)
async def endpoint_page(run_id: str, endpoint_id: str, p: PlatformDep) -> HTMLResponse:
    detail = await endpoint_detail(p, run_id, endpoint_id)
    for side in (detail["me"], detail["pair"]):
        if side:
            side["charts"] = charts(side["series"])
    return render("endpoint.html", **detail)
