"""JSON API for a project's registrars and SIP account pools (passwords write-only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from callmeter_storage import resources as rows

from . import resources
from .authz import PrincipalDep as ScopeDep
from .deps import PlatformDep
from .errors import error_responses
from .resources import PoolIn, RegistrarIn

router = APIRouter(prefix="/api/v1")
ERRORS = error_responses(403, 404, 422)


def page(items: list[Any]) -> dict[str, Any]:
    return {"items": items, "total": len(items), "limit": len(items), "offset": 0}


@router.get("/registrars", tags=["resources"])
async def list_registrars(p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    found = await resources.query(p, rows.list_registrars)
    return page([r for r in found if scope.sees(r["project"])])


@router.post(
    "/registrars", status_code=status.HTTP_201_CREATED, tags=["resources"], responses=ERRORS
)
async def create_registrar(body: RegistrarIn, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    """Save a registrar (host, port, transport, domain, outbound proxy, expiry)."""
    rid = await resources.save_registrar(p, scope, body)
    return await resources.registrar(p, scope, rid, "registrar_id")


@router.get("/registrars/{registrar_id}", tags=["resources"], responses=error_responses(404))
async def get_registrar(registrar_id: str, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    return await resources.registrar(p, scope, registrar_id, "registrar_id")


@router.put("/registrars/{registrar_id}", tags=["resources"], responses=ERRORS)
async def update_registrar(
    registrar_id: str, body: RegistrarIn, p: PlatformDep, scope: ScopeDep
) -> dict[str, Any]:
    await resources.save_registrar(p, scope, body, registrar_id)
    return await resources.registrar(p, scope, registrar_id, "registrar_id")


@router.delete(
    "/registrars/{registrar_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["resources"],
    responses=error_responses(404),
)
async def delete_registrar(registrar_id: str, p: PlatformDep, scope: ScopeDep) -> None:
    await resources.delete_registrar(p, scope, registrar_id)


async def _pool_view(p: PlatformDep, scope: ScopeDep, pool_id: str) -> dict[str, Any]:
    found = await resources.pool(p, scope, pool_id, "pool_id")
    return resources.pool_view(found, resources.in_use(p.projector.models.runs, pool_id))


@router.get("/pools", tags=["resources"])
async def list_pools(p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    found = await resources.query(p, rows.list_pools)
    runs = p.projector.models.runs
    return page(
        [
            {**pool, "free": pool["size"] - len(resources.in_use(runs, pool["id"]))}
            for pool in found
            if scope.sees(pool["project"])
        ]
    )


@router.post("/pools", status_code=status.HTTP_201_CREATED, tags=["resources"], responses=ERRORS)
async def create_pool(body: PoolIn, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    """Save an account pool: `accounts` and/or `csv` (username,password[,auth_username])."""
    return await _pool_view(p, scope, await resources.save_pool(p, scope, body))


@router.get("/pools/{pool_id}", tags=["resources"], responses=error_responses(404))
async def get_pool(pool_id: str, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    """The pool, passwords write-only (`password_set`), with its free accounts counted."""
    return await _pool_view(p, scope, pool_id)


@router.put("/pools/{pool_id}", tags=["resources"], responses=ERRORS)
async def update_pool(
    pool_id: str, body: PoolIn, p: PlatformDep, scope: ScopeDep
) -> dict[str, Any]:
    """Replace the accounts; one given without a password keeps the stored one."""
    await resources.save_pool(p, scope, body, pool_id)
    return await _pool_view(p, scope, pool_id)


@router.delete(
    "/pools/{pool_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["resources"],
    responses=error_responses(404),
)
async def delete_pool(pool_id: str, p: PlatformDep, scope: ScopeDep) -> None:
    """Delete the pool and destroy its passwords."""
    await resources.delete_pool(p, scope, pool_id)
