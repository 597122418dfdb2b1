"""Replay of a finished run in the browser: the run page as it was at any moment.

A scrubber (a plain form without JavaScript) picks the moment; play buttons
advance it at 1x, 10x or as fast as frames render. Each frame folds the run's
stored events up to that moment and reads the samples stored until then.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta
from typing import Any

import psycopg
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from callmeter_events import EVENTS, Event, subjects
from callmeter_storage import results, stats

from . import service
from .deps import Platform, PlatformDep
from .endpoint_views import ListQuery, endpoint_page, group_breakdown, group_means
from .pages import render, render_block
from .replay_view import length_s, run_start, state_at
from .svg import topology
from .traces import read_subject
from .views import counts_of, run_view

router = APIRouter(include_in_schema=False)
_CACHE: OrderedDict[str, list[Event]] = OrderedDict()  # finished runs never change

_MOS_UNTIL = """
SELECT endpoint_id, avg(mos) FROM metric_samples
WHERE run_id = %s AND direction = 'recv' AND time <= %s AND mos IS NOT NULL GROUP BY endpoint_id
"""


async def run_events(p: Platform, run_id: str) -> list[Event]:
    await service.get_run(p, run_id)  # 404 for an unknown (or deleted) run, cached or not
    if run_id not in _CACHE:
        _CACHE[run_id] = await read_subject(
            p.bus, EVENTS.name, subjects.run_events(run_id), timeout=30
        )
        while len(_CACHE) > 20:
            _CACHE.popitem(last=False)
    return _CACHE[run_id]


def _metrics_until(
    conn: psycopg.Connection[Any], run_id: str, until: Any
) -> tuple[dict[str, Any], dict[str, float]]:
    """The summary as it stood at `until` (the statistics module, per direction) and
    each endpoint's MOS until then (a scan of one run's receive samples)."""
    summary = results.summary_of(stats.run_quality(conn, run_id, until=until))
    mos = {r[0]: float(r[1]) for r in conn.execute(_MOS_UNTIL, (run_id, until)).fetchall()}
    return summary, mos


async def frame(p: Platform, run_id: str, at_s: float) -> dict[str, Any]:
    events = await run_events(p, run_id)
    total = length_s(events)
    at_s = max(0.0, min(at_s, total))
    run_doc, endpoints = state_at(events, run_id, at_s)
    start = run_start(events)
    assert start is not None
    summary, mos = await service.query(p, _metrics_until, run_id, start + timedelta(seconds=at_s))
    run = run_view(run_doc, endpoints, summary)
    definition = run["definition"]
    configured = definition["duration_s"] + definition.get("buildup_s", 0)
    run["progress"] = min(1.0, at_s / total) if total else 1.0
    return {
        "run": run,
        "live": False,
        "replay": True,
        "at_s": at_s,
        "length_s": total,
        "groups": group_breakdown(
            definition, counts_of(endpoints), group_means(run["endpoints"], mos)
        ),
        "listing": endpoint_page(run["endpoints"], mos, ListQuery(per_page=25)),
        "elapsed_s": round(at_s),
        "total_s": configured,
    }


@router.get("/runs/{run_id}/replay", response_class=HTMLResponse)
async def replay_page(run_id: str, p: PlatformDep, at: float = Query(0.0, ge=0)) -> HTMLResponse:
    ctx = await frame(p, run_id, at)
    live_html = Markup(render_block("run.html", "live", **ctx))  # noqa: S704 - our own template
    return render(
        "replay.html", **ctx, live_html=live_html, topology=topology(ctx["run"]["definition"])
    )


@router.get("/runs/{run_id}/replay/frame", response_class=HTMLResponse)
async def replay_frame(run_id: str, p: PlatformDep, at: float = Query(0.0, ge=0)) -> HTMLResponse:
    return render("run.html", block="live", **await frame(p, run_id, at))
