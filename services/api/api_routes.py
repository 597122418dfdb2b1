"""JSON API under /api/v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from callmeter_events import TestDefinition
from callmeter_storage import results

from . import service
from .deps import PlatformDep

router = APIRouter(prefix="/api/v1")


@router.post("/tests", status_code=status.HTTP_201_CREATED, tags=["tests"])
async def create_test(body: TestDefinition, p: PlatformDep) -> dict[str, Any]:
    return {"id": await service.save_test(p, body)}


@router.get("/tests", tags=["tests"])
async def list_tests(p: PlatformDep) -> dict[str, Any]:
    return {"items": await service.query(p, results.list_tests)}


@router.get("/tests/{test_id}", tags=["tests"])
async def get_test(test_id: str, p: PlatformDep) -> dict[str, Any]:
    return await service.get_test(p, test_id)


@router.put("/tests/{test_id}", tags=["tests"])
async def update_test(test_id: str, body: TestDefinition, p: PlatformDep) -> dict[str, Any]:
    await service.get_test(p, test_id)
    return {"id": await service.save_test(p, body, test_id)}


@router.delete("/tests/{test_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["tests"])
async def delete_test(test_id: str, p: PlatformDep) -> None:
    await service.delete_test(p, test_id)


@router.post("/tests/{test_id}/runs", status_code=status.HTTP_202_ACCEPTED, tags=["runs"])
async def create_run(test_id: str, p: PlatformDep) -> dict[str, Any]:
    return {"id": await service.start_run(p, test_id)}


@router.get("/runs", tags=["runs"])
async def list_runs(p: PlatformDep, test_id: str | None = None) -> dict[str, Any]:
    return {"items": await service.query(p, results.list_runs, test_id)}


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(run_id: str, p: PlatformDep) -> dict[str, Any]:
    return await service.get_run(p, run_id)


@router.post("/runs/{run_id}/stop", status_code=status.HTTP_202_ACCEPTED, tags=["runs"])
async def stop_run(run_id: str, p: PlatformDep) -> dict[str, Any]:
    await service.stop_run(p, run_id)
    return {"id": run_id, "stop_requested": True}


@router.get("/workers", tags=["workers"])
async def list_workers(p: PlatformDep) -> dict[str, Any]:
    workers = sorted(p.projector.workers.values(), key=lambda w: w.worker_id)
    return {"items": [w.__dict__ for w in workers]}
