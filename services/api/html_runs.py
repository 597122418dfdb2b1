"""Run pages: overview (live over server-sent events), endpoint list, stop, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from callmeter_events import TERMINAL_STATUSES
from callmeter_storage import calls

from . import health, queries, service
from .authz import Principal, Role, require
from .calls_view import CallQuery, charts, pages
from .deps import Platform, PlatformDep
from .endpoint_views import ListQuery, group_breakdown
from .errors import ApiError
from .pages import render, render_block
from .results_view import results_data, results_view
from .svg import topology
from .views import listing_items, run_header
from .webhooks import deliveries

router = APIRouter(include_in_schema=False)
RUN_PAGE_ROWS = 25
RUN_PAGE_QUERY = ListQuery(per_page=RUN_PAGE_ROWS)  # what the run page lists (and live feeds read)
KEEPALIVE_S = 15.0


async def overview(p: Platform, run_id: str, query: ListQuery | None = None) -> dict[str, Any]:
    """The run view plus what the page adds: groups, endpoint page, live flag."""
    found = await service.query(p, queries.run_page, run_id, query or RUN_PAGE_QUERY)
    if found is None:
        raise ApiError(404, "not_found", f"no run {run_id!r}", "run_id")
    return await notice_for(p, shape(found))


async def _shaped(found: queries.RunPage) -> dict[str, Any]:
    return shape(found)


def shape(found: queries.RunPage) -> dict[str, Any]:
    """The page's context from what queries.run_page read (no I/O)."""
    counts, listing = found.counts, found.listing
    run = run_header(found.run, counts, found.summary)
    definition = run["definition"]
    total = definition["duration_s"] + definition.get("buildup_s", 0)
    return {
        "run": run,
        "live": run["status"] not in TERMINAL_STATUSES,
        "groups": group_breakdown(definition, counts, found.group_mos),
        "listing": {
            "items": listing_items(listing.docs),
            "total": listing.total,
            "page": listing.page,
            "pages": listing.pages,
            "query": listing.query,
        },
        "elapsed_s": elapsed_s(run, total),
        "total_s": total,
        "degraded": None,  # set by the caller, which can ask the platform (notice_for)
        "quality": found.quality,  # read once: a finished run's results reuse it
    }


async def notice_for(p: Platform, ctx: dict[str, Any]) -> dict[str, Any]:
    """The context with the degraded-platform banner a live run's page shows, if any."""
    return {**ctx, "degraded": await health.degraded_notice(p) if ctx["live"] else None}


def elapsed_s(run: dict[str, Any], total: float) -> int:
    """Seconds the run has been going; a finished run reports its real length, since
    a stopped run ends before its configured duration."""
    if run["status"] in TERMINAL_STATUSES and run.get("started_at") and run.get("finished_at"):
        started = datetime.fromisoformat(run["started_at"])
        return round((datetime.fromisoformat(run["finished_at"]) - started).total_seconds())
    return round(run["progress"] * total)


def sse(event: str, html: str) -> str:
    """One server-sent event; every line of the payload needs its own `data:` prefix."""
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"


def stream(
    request: Request,
    p: Platform,
    run_id: str,
    make: Callable[[queries.RunPage], Awaitable[dict[str, Any]]],
    event: str,
    render_fn: Any,
) -> StreamingResponse:
    """Push the fragment when it changes until the run ends.

    One stream per page carries the whole live region: the browser swaps one
    block instead of every element polling on its own. The run's reads come from
    its live feed (live.py), shared by every page watching the run and driven by
    the run's events; this page only renders them.
    """

    async def events() -> AsyncIterator[str]:
        last, shown = "", None
        async with p.live.watch(run_id) as reads:
            while not await request.is_disconnected():
                try:
                    found = await asyncio.wait_for(reads.get(), KEEPALIVE_S)
                except TimeoutError:
                    # No run events (NATS may be down): the banner can still change.
                    html = render_fn(await notice_for(p, shown)) if shown else last
                    if html != last:
                        yield sse(event, html)
                        last = html
                    else:
                        yield ": keepalive\n\n"  # proxies close silent connections
                    continue
                shown = await make(found)
                ctx = await notice_for(p, shown)
                html = render_fn(ctx)
                if html != last:
                    yield sse(event, html)
                    last = html
                if not ctx["live"]:
                    yield sse("done", "finished")
                    return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(run_id: str, p: PlatformDep) -> HTMLResponse:
    ctx = await overview(p, run_id)
    log = (
        await service.query(p, deliveries, run_id)
        if ctx["run"]["definition"].get("webhooks")
        else []
    )
    # A finished run's results read aggregates only; a live run's page skips them.
    outcome = (
        None
        if ctx["live"]
        else results_view(
            await service.query(p, results_data, run_id, ctx["quality"]),
            ctx["run"],
            await service.query(p, queries.sip_code_counts, run_id),
        )
    )
    return render(
        "run.html",
        **ctx,
        topology=topology(ctx["run"]["definition"]),
        webhook_log=log,
        results=outcome,
    )


@router.get("/runs/{run_id}/live", response_class=HTMLResponse)
async def run_live(run_id: str, p: PlatformDep) -> HTMLResponse:
    """The live block alone (what the stream sends), for scripts and old clients."""
    return render("run.html", block="live", **await overview(p, run_id))


@router.get("/runs/{run_id}/stream")
async def run_stream(run_id: str, request: Request, p: PlatformDep) -> StreamingResponse:
    await overview(p, run_id)  # a 404 before the stream starts, not inside it
    return stream(
        request,
        p,
        run_id,
        _shaped,
        "live",
        lambda ctx: render_block("run.html", "live", **ctx),
    )


@router.post("/runs/{run_id}/stop")
async def stop_run(
    run_id: str, p: PlatformDep, who: Annotated[Principal, Depends(require(Role.TESTER))]
) -> RedirectResponse:
    await service.stop_run(p, run_id, actor=who.actor)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/delete")
async def delete_run(
    run_id: str, p: PlatformDep, who: Annotated[Principal, Depends(require(Role.EDITOR))]
) -> RedirectResponse:
    test_id = (await service.get_run(p, run_id))["test_id"]
    await service.delete_run(p, run_id, actor=who.actor)
    return RedirectResponse(f"/tests/{test_id}", status_code=303)


@router.get("/runs/{run_id}/endpoints", response_class=HTMLResponse)
async def endpoints_page(run_id: str, request: Request, p: PlatformDep) -> HTMLResponse:
    query = ListQuery.parse(dict(request.query_params))
    return render("endpoints.html", **await overview(p, run_id, query))


@router.get("/runs/{run_id}/calls", response_class=HTMLResponse)
async def calls_page(run_id: str, request: Request, p: PlatformDep) -> HTMLResponse:
    """Every call of the run: summary, calls per second and concurrent calls, a page of
    call records with filters (the JSON twin is /api/v1/runs/{id}/calls)."""
    query = CallQuery.parse(dict(request.query_params))
    ctx = await overview(p, run_id)
    total, rows = await service.query(
        p, calls.page, run_id, query.filter(), query.per_page, query.offset
    )
    spans = await service.query(p, calls.spans, run_id)
    return render(
        "calls.html",
        run=ctx["run"],
        groups=ctx["groups"],
        query=query,
        total=total,
        rows=rows,
        pages=pages(total, query.per_page),
        summary=calls.summarise(spans),
        charts=charts(calls.series(spans)) if spans else [],
    )


@router.get("/runs/{run_id}/endpoints/stream")
async def endpoints_stream(run_id: str, request: Request, p: PlatformDep) -> StreamingResponse:
    query = ListQuery.parse(dict(request.query_params))
    await overview(p, run_id, query)

    async def make(found: queries.RunPage) -> dict[str, Any]:
        """The shared read of the run with this page's own page of the list."""
        listing = await service.query(p, queries.listing_page, run_id, query)
        return shape(found._replace(listing=listing))

    return stream(
        request,
        p,
        run_id,
        make,
        "table",
        lambda ctx: render_block("endpoints.html", "table", **ctx),
    )
