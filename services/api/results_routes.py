"""JSON results of a run under /api/v1: summary and distributions, series, sample export."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from callmeter_events import Direction
from callmeter_storage import export, results, stats
from callmeter_vocabulary.metrics import BY_KEY

from . import service
from .deps import PlatformDep
from .errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["results"])
_KNOWN = (
    "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = %(r)s)"
    " OR EXISTS (SELECT 1 FROM rollup_endpoint WHERE run_id = %(r)s)"
)


async def _known_run(p: PlatformDep, run_id: str) -> None:
    def known(conn: Any) -> bool:
        row = conn.execute(_KNOWN, {"r": run_id}).fetchone()
        return bool(row and row[0])

    if not await service.query(p, known):
        raise ApiError(404, "not_found", f"no run {run_id!r}", "run_id")


@router.get("/runs/{run_id}/results")
async def run_results(run_id: str, p: PlatformDep) -> dict[str, Any]:
    """Per run, group and endpoint: quality percentiles, success rates, timings, MOS histogram."""
    await _known_run(p, run_id)
    return await service.query(p, results.run_results, run_id)


@router.get("/runs/{run_id}/series")
async def run_series(
    run_id: str,
    p: PlatformDep,
    group: str | None = None,
    bucket_s: Annotated[int, Query(ge=1, le=3600, description="seconds per point")] = 1,
    direction: Literal["send", "recv"] | None = None,
) -> dict[str, Any]:
    """Per-second aggregates of the run, one group, or one direction (send: what callers
    send, recv: what they receive) over time."""
    await _known_run(p, run_id)
    points = await service.query(p, stats.run_series, run_id, group, bucket_s, direction)
    return {
        "run_id": run_id,
        "group": group,
        "direction": direction,
        "bucket_s": bucket_s,
        "points": points,
    }


# Any key of the catalogue, listed in the schema so a client knows them (a Literal
# built at run time, which a type checker cannot read: it sees a str).
if TYPE_CHECKING:
    MetricKey = str
else:
    MetricKey = Literal[tuple(BY_KEY)]


@router.get("/runs/{run_id}/endpoints/{endpoint_id}/series")
async def endpoint_series(
    run_id: str,
    endpoint_id: str,
    p: PlatformDep,
    key: MetricKey = "mos",
    direction: Direction = Direction.recv,
) -> dict[str, Any]:
    """One catalogue key of one endpoint, second by second."""
    points = await service.query(p, stats.endpoint_series, run_id, endpoint_id, key, direction)
    m = BY_KEY[key]
    return {
        "run_id": run_id,
        "endpoint_id": endpoint_id,
        "direction": direction,
        "key": key,
        "unit": m.unit,
        "points": [{"t": t, "value": v} for t, v in points],
    }


@router.get(
    "/runs/{run_id}/speech_quality",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def speech_quality(
    run_id: str, p: PlatformDep, format: Literal["json", "csv"] = "json"
) -> Any:
    """PESQ MOS-LQO per sampled receiver beside its E-model MOS; CSV for spreadsheets."""
    await _known_run(p, run_id)
    sq = await service.query(p, results.speech_quality, run_id)
    if format == "json":
        return {"run_id": run_id, **sq}
    columns = ("endpoint_id", "group", "codec", "mode", "mos_lqo", "mos_emodel", "error")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([e[c] for c in columns] for e in sq["endpoints"])
    filename = f"callmeter-{run_id}-speech-quality.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/runs/{run_id}/samples")
async def samples(
    run_id: str, p: PlatformDep, format: Literal["csv", "parquet"] = "csv"
) -> StreamingResponse:
    """Every stored sample of the run, both directions, all catalogue keys."""
    await _known_run(p, run_id)
    filename = f"callmeter-{run_id}-samples.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return StreamingResponse(_csv(p, run_id), media_type="text/csv", headers=headers)
    spooled = await asyncio.to_thread(_parquet, p, run_id)
    return StreamingResponse(
        _drain(spooled), media_type="application/vnd.apache.parquet", headers=headers
    )


def _csv(p: PlatformDep, run_id: str) -> Iterator[bytes]:
    # Starlette iterates a sync generator in a thread; the connection goes back
    # to the pool when the download ends or the client goes away.
    with p.pool.connection() as conn:
        yield from export.csv_chunks(conn, run_id)


def _parquet(p: PlatformDep, run_id: str) -> IO[bytes]:
    # Parquet's footer comes last, so the file is built first (in memory up to
    # 64 MB, then on disk) and streamed out after.
    out = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115 - closed by _drain
    with p.pool.connection() as conn:
        export.write_parquet(conn, run_id, out)
    out.seek(0)
    return out


def _drain(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(2**20):
            yield chunk
