"""/healthz, /readyz (orchestrators), /api/v1/system and the System page (operators)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from . import health, service
from .auth import system_view_allowed
from .authz import PrincipalDep
from .deps import PlatformDep
from .pages import render

probes = APIRouter(tags=["health"])  # open: orchestrators probe without a key
api = APIRouter(prefix="/api/v1", tags=["health"])
pages = APIRouter(include_in_schema=False)


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The API process is alive and serving (restart it when this fails)."""
    return {"status": "alive"}


@probes.get(
    "/readyz",
    responses={503: {"description": "Not ready: the body names each check that failed."}},
)
async def readyz(p: PlatformDep) -> JSONResponse:
    """200 when NATS and PostgreSQL answer and ingest and the read models keep up; else 503."""
    code, body = health.readiness(await health.checks(p))
    return JSONResponse(body, status_code=code)


async def system_facts(p: PlatformDep) -> dict[str, Any]:
    checks, streams, db = await asyncio.gather(
        health.checks(p),
        health.streams(p),
        service.query(p, health.database_facts),
        return_exceptions=True,
    )
    _, ready = health.readiness(checks if isinstance(checks, list) else [])
    return {
        "ready": ready,
        "streams": [asdict(s) for s in streams] if isinstance(streams, list) else None,
        "streams_error": None if isinstance(streams, list) else f"NATS: {streams}",
        "database": db if isinstance(db, dict) else None,
        "database_error": None if isinstance(db, dict) else f"PostgreSQL: {db}",
    }


@api.get("/system")
async def system(p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Readiness, stream sizes and consumer lag, ingest rate, database size, oldest run;
    for Owners of everything and Admins of the default organisation."""
    system_view_allowed(who)
    return await system_facts(p)


@pages.get("/system", response_class=HTMLResponse)
async def system_page(p: PlatformDep, who: PrincipalDep) -> HTMLResponse:
    system_view_allowed(who)
    return render("system.html", **await system_facts(p))
