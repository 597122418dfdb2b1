"""A run's call records under /api/v1/runs/{id}/calls: pages, summary, exports."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from callmeter_storage import calls

from . import service
from .deps import PlatformDep
from .results_routes import _drain, _known_run

router = APIRouter(prefix="/api/v1", tags=["calls"])


def call_filter(
    status: Annotated[
        Literal["answered", "failed", "unanswered"] | None,
        Query(description="answered; failed (outcome not SUCCESS or with warnings); unanswered"),
    ] = None,
    outcome: str | None = None,
    group: str | None = None,
    endpoint_id: str | None = None,
    sip_code: Annotated[int | None, Query(ge=100, le=699)] = None,
) -> calls.CallFilter:
    return calls.CallFilter(status, outcome, group, endpoint_id, sip_code)


FilterDep = Annotated[calls.CallFilter, Depends(call_filter)]


@router.get("/runs/{run_id}/calls")
async def list_calls(
    run_id: str,
    p: PlatformDep,
    flt: FilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """One page of the run's call records (attempt order), filtered."""
    await _known_run(p, run_id)
    total, rows = await service.query(p, calls.page, run_id, flt, limit, offset)
    return {"run_id": run_id, "total": total, "limit": limit, "offset": offset, "calls": rows}


@router.get("/runs/{run_id}/calls/summary")
async def calls_summary(
    run_id: str, p: PlatformDep, points: Annotated[int, Query(ge=10, le=2000)] = 300
) -> dict[str, Any]:
    """Attempts, answered, failed, answer-seizure ratio; calls per second attempted,
    established and failed, and concurrent calls, over time."""
    await _known_run(p, run_id)
    spans = await service.query(p, calls.spans, run_id)
    return {"run_id": run_id, **calls.summarise(spans), "series": calls.series(spans, points)}


@router.get("/runs/{run_id}/calls/export")
async def export_calls(
    run_id: str, p: PlatformDep, flt: FilterDep, format: Literal["csv", "parquet"] = "csv"
) -> StreamingResponse:
    """Every matching call record as CSV or Parquet."""
    await _known_run(p, run_id)
    filename = f"callmeter-{run_id}-calls.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return StreamingResponse(_csv(p, run_id, flt), media_type="text/csv", headers=headers)
    spooled = await asyncio.to_thread(_parquet, p, run_id, flt)
    return StreamingResponse(
        _drain(spooled), media_type="application/vnd.apache.parquet", headers=headers
    )


def _csv(p: PlatformDep, run_id: str, flt: calls.CallFilter) -> Iterator[bytes]:
    with p.pool.connection() as conn:
        yield from calls.csv_chunks(conn, run_id, flt)


def _parquet(p: PlatformDep, run_id: str, flt: calls.CallFilter) -> IO[bytes]:
    out = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115 - closed by _drain
    with p.pool.connection() as conn:
        calls.write_parquet(conn, run_id, flt, out)
    out.seek(0)
    return out
