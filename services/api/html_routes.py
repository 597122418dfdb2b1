"""Server-rendered pages (Jinja2 + HTMX): one router per resource, gathered here."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from . import (
    html_endpoints,
    html_replay,
    html_resources,
    html_runs,
    html_tests,
    queries,
    service,
)
from .authz import PrincipalDep
from .deps import PlatformDep
from .details import RunIds, compared_runs
from .pages import error_page, render
from .svg import Chart, Series, line_chart
from .views import compare_view

__all__ = ["router", "error_page"]

router = APIRouter(include_in_schema=False)
# Order matters: /runs/{id}/endpoints/stream before /runs/{id}/endpoints/{endpoint}.
router.include_router(html_tests.router)
router.include_router(html_runs.router)
router.include_router(html_endpoints.router)
router.include_router(html_replay.router)
router.include_router(html_resources.router)


@router.get("/workers", response_class=HTMLResponse)
async def workers_page(p: PlatformDep) -> HTMLResponse:
    workers = sorted(p.projector.workers.values(), key=lambda w: w.worker_id)
    return render("workers.html", workers=workers)


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(
    p: PlatformDep,
    who: PrincipalDep,
    page: int = Query(1, ge=1),
    probes: Literal["hide", "show", "only"] = "hide",
) -> HTMLResponse:
    """Runs, newest first; probe executions (a run every interval) hidden unless asked."""
    per_page = 50
    shown = who.project_filter()
    only, hidden = (shown.only, shown.hidden) if shown else (None, ())
    which = {"hide": False, "show": None, "only": True}[probes]
    runs, total = await service.query(
        p, queries.page_runs, None, per_page, (page - 1) * per_page, only, hidden, which
    )
    pages = max(1, -(-total // per_page))
    return render("runs.html", runs=runs, total=total, page=page, pages=pages, probes=probes)


def overlay(runs: list[dict[str, Any]]) -> list[str]:
    """One chart per metric with a line per run: the worse direction's average per
    second, x = seconds since the run's first sample."""
    specs = (
        ("MOS", "mos", "", 1.0),
        ("Jitter", "jitter_ms", "ms", 1.0),
        ("Packet loss", "fraction_lost", "%", 100.0),
        ("RTT", "rtt_ms", "ms", 1.0),
    )
    out = []
    for title, key, unit, scale in specs:
        series = [
            Series(
                r["id"], [(s["t"], None if s[key] is None else s[key] * scale) for s in r["series"]]
            )
            for r in runs
        ]
        out.append(line_chart(Chart(title, unit, series, y_min=1.0 if key == "mos" else 0.0)))
    return out


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(p: PlatformDep, who: PrincipalDep, runs: RunIds = ()) -> HTMLResponse:
    views = await compared_runs(p, runs, who)
    charts = overlay(views) if len(views) >= 2 else []
    return render("compare.html", rows=compare_view(views), charts=charts)
