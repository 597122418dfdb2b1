"""Reads shared by the pages and the JSON API: endpoint detail, runs to compare."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Query

from callmeter_storage import stats

from . import auth, queries, service, traces
from .authz import Principal
from .deps import Platform
from .endpoint_views import paired_endpoints, status_class, timeline
from .errors import ApiError
from .views import endpoint_view, run_view

MAX_COMPARED = 6
# Repeated (?runs=a&runs=b) or comma-separated (?runs=a,b); both are handy in links.
RunIds = Annotated[tuple[str, ...], Query(description="run ids, repeated or comma-separated")]


async def endpoint_detail(p: Platform, run_id: str, endpoint_id: str) -> dict[str, Any]:
    """The endpoint, its timeline and series; the same for its pair, if it has one."""
    run = await service.query(p, lambda c: queries.run_overview(c, run_id))
    if run is None:
        raise ApiError(404, "not_found", f"no run {run_id!r}", "run_id")
    run_doc, endpoints, _summary, mos = run
    docs = {e["endpoint_id"]: e for e in endpoints}
    if endpoint_id not in docs:
        raise ApiError(
            404, "not_found", f"no endpoint {endpoint_id!r} in run {run_id}", "endpoint_id"
        )
    pairs = [e for e in paired_endpoints(run_doc["definition"], endpoint_id) if e in docs]

    async def one(ep_id: str) -> dict[str, Any]:
        (events, messages), series = await asyncio.gather(
            traces.endpoint_history(p.bus, p.settings.database_url, run_id, ep_id),
            service.query(p, queries.endpoint_series, run_id, ep_id),
        )
        view = endpoint_view(docs[ep_id])
        view.update(mos=mos.get(ep_id), css=status_class(view))
        return {
            "endpoint": view,
            "timeline": timeline(events, messages),
            "messages": len(messages),
            "series": series,
        }

    parts = await asyncio.gather(*(one(e) for e in [endpoint_id, *pairs[:1]]))
    return {
        "run": {
            "id": run_id,
            "test_id": run_doc["test_id"],
            "status": run_doc["status"],
            "name": run_doc["definition"]["name"],
        },
        "me": parts[0],
        "pair": parts[1] if len(parts) > 1 else None,
        "pairs": pairs,
    }


async def compared_runs(
    p: Platform, run_ids: tuple[str, ...] | list[str], who: Principal
) -> list[dict[str, Any]]:
    async def one(run_id: str) -> dict[str, Any]:
        await auth.ensure_visible(p, who, "run_id", run_id, "runs")
        found = await service.query(p, queries.run_overview, run_id)
        if found is None:
            raise ApiError(404, "not_found", f"no run {run_id!r}", "runs")
        view = run_view(*found[:3])
        view["series"] = await service.query(p, stats.worst_series, run_id)
        return view

    ids = list(dict.fromkeys(i for r in run_ids for i in r.split(",") if i))[:MAX_COMPARED]
    return list(await asyncio.gather(*(one(i) for i in ids)))
