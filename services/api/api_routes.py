"""JSON API under /api/v1: everything the pages do, for scripts and CI."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from callmeter_events import TestDefinition
from callmeter_storage import results

from . import queries, service
from .auth import own_definition
from .authz import Principal, PrincipalDep, Role, require
from .deps import PlatformDep
from .details import RunIds, compared_runs, endpoint_detail
from .endpoint_views import ListQuery
from .errors import ApiError, error_responses
from .views import compare_view, listing_items

router = APIRouter(prefix="/api/v1")
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip")]
Editor = Annotated[Principal, Depends(require(Role.EDITOR))]
Tester = Annotated[Principal, Depends(require(Role.TESTER))]


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    """The list envelope every collection returns."""
    return {"items": items, "total": total, "limit": limit, "offset": offset}


async def stored_test(p: PlatformDep, test_id: str) -> dict[str, Any]:
    """A test as the read models now hold it (after read-your-writes), with its id."""
    return {"id": test_id, **await service.get_test(p, test_id)}


@router.post(
    "/tests", status_code=status.HTTP_201_CREATED, tags=["tests"], responses=error_responses(403)
)
async def create_test(body: TestDefinition, p: PlatformDep, who: Editor) -> dict[str, Any]:
    """Save a new test; answers with the test as stored."""
    test_id = await service.save_test(p, own_definition(who, body), actor=who.actor)
    return await stored_test(p, test_id)


@router.get("/tests", tags=["tests"])
async def list_tests(
    p: PlatformDep, who: PrincipalDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    tests = await service.query(p, results.list_tests)
    tests = [t for t in tests if who.sees(t["definition"]["project"])]
    return page(tests[offset : offset + limit], len(tests), limit, offset)


@router.get("/tests/{test_id}", tags=["tests"])
async def get_test(test_id: str, p: PlatformDep) -> dict[str, Any]:
    return await service.get_test(p, test_id)


@router.put("/tests/{test_id}", tags=["tests"], responses=error_responses(403))
async def update_test(
    test_id: str, body: TestDefinition, p: PlatformDep, who: Editor
) -> dict[str, Any]:
    stored = (await service.get_test(p, test_id))["definition"]
    saved = await service.save_test(p, own_definition(who, body, stored), test_id, who.actor)
    return await stored_test(p, saved)


@router.post("/tests/{test_id}/duplicate", status_code=status.HTTP_201_CREATED, tags=["tests"])
async def duplicate_test(test_id: str, p: PlatformDep, who: Editor) -> dict[str, Any]:
    return await stored_test(p, await service.duplicate_test(p, test_id, actor=who.actor))


@router.delete("/tests/{test_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["tests"])
async def delete_test(test_id: str, p: PlatformDep, who: Editor) -> None:
    await service.delete_test(p, test_id, actor=who.actor)


@router.post("/tests/{test_id}/runs", status_code=status.HTTP_202_ACCEPTED, tags=["runs"])
async def create_run(test_id: str, p: PlatformDep, who: Tester) -> dict[str, Any]:
    """Start a run of the test; answers with the run as stored (PENDING until scheduled)."""
    return await service.get_run(p, await service.start_run(p, test_id, actor=who.actor))


@router.get("/runs", tags=["runs"])
async def list_runs(
    p: PlatformDep,
    who: PrincipalDep,
    test_id: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    probes: Annotated[
        bool | None,
        Query(description="true: probe executions only; false: none of them; unset: all"),
    ] = None,
) -> dict[str, Any]:
    shown = who.project_filter()
    only, hidden = (shown.only, shown.hidden) if shown else (None, ())
    runs, total = await service.query(
        p, queries.page_runs, test_id, limit, offset, only, hidden, probes
    )
    return page(runs, total, limit, offset)


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(run_id: str, p: PlatformDep) -> dict[str, Any]:
    return await service.get_run(p, run_id)


@router.post(
    "/runs/{run_id}/stop",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["runs"],
    responses=error_responses(409),
)
async def stop_run(run_id: str, p: PlatformDep, who: Tester) -> dict[str, Any]:
    await service.stop_run(p, run_id, actor=who.actor)
    return {"id": run_id, "stop_requested": True}


@router.delete("/runs/{run_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["runs"])
async def delete_run(run_id: str, p: PlatformDep, who: Editor) -> None:
    """Delete a finished run: its events, samples, rollups, SIP messages and views."""
    await service.delete_run(p, run_id, actor=who.actor)


@router.get("/runs/{run_id}/endpoints", tags=["endpoints"])
async def list_endpoints(
    run_id: str,
    request: Request,
    p: PlatformDep,
    limit: Limit = 100,
    offset: Offset = 0,
    phase: str = "",
    outcome: str = "",
    group: str = "",
    q: str = "",
    sort: str = "endpoint",
    order: str = "asc",
) -> dict[str, Any]:
    """Filter (phase, outcome or `failed`, group, text), sort and page a run's endpoints."""
    query = ListQuery.parse(dict(request.query_params))

    def read(conn: Any) -> tuple[list[dict[str, Any]], int] | None:
        if results.run_row(conn, run_id) is None:
            return None
        return queries.endpoint_listing(conn, run_id, query, offset, limit)

    found = await service.query(p, read)
    if found is None:
        raise ApiError(404, "not_found", f"no run {run_id!r}", "run_id")
    docs, total = found
    items = listing_items(docs)
    for item in items:
        item.pop("css")
    return page(items, total, limit, offset)


@router.get("/runs/{run_id}/endpoints/{endpoint_id}", tags=["endpoints"])
async def get_endpoint(run_id: str, endpoint_id: str, p: PlatformDep) -> dict[str, Any]:
    """The endpoint, its timeline (events and full SIP messages), samples, and its pair."""
    return await endpoint_detail(p, run_id, endpoint_id)


@router.get("/compare", tags=["runs"], responses=error_responses(404))
async def compare(p: PlatformDep, who: PrincipalDep, runs: RunIds = ()) -> dict[str, Any]:
    """Summary figures of two or more runs and their change from the first."""
    views = await compared_runs(p, runs, who)
    if len(views) < 2:
        raise ApiError(422, "validation_error", "runs: give at least two run ids", "runs")
    rows = compare_view(views)
    return {
        "runs": [
            {
                "id": r["run"]["id"],
                "test_id": r["run"]["test_id"],
                "status": r["run"]["status"],
                "values": r["values"],
                "deltas": r["deltas"],
                "series": r["run"]["series"],
            }
            for r in rows
        ]
    }


@router.get("/workers", tags=["workers"])
async def list_workers(p: PlatformDep, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    workers = sorted(p.projector.workers.values(), key=lambda w: w.worker_id)
    return page([w.__dict__ for w in workers[offset : offset + limit]], len(workers), limit, offset)
