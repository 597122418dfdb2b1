"""JSON API for probes, their history, and a project's webhooks and status page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict

from callmeter_storage import probes as rows

from . import probes
from .authz import PrincipalDep as ScopeDep
from .deps import PlatformDep
from .errors import error_responses
from .probes import ProbeIn, ProjectWebhooksIn
from .resources import VIEWER, query

router = APIRouter(prefix="/api/v1")
ERRORS = error_responses(403, 404, 422)
Limit = Annotated[int, Query(ge=1, le=1000, description="executions, newest first")]


@router.get("/probes", tags=["probes"])
async def list_probes(p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    found = [probes.view(f) for f in await query(p, rows.list_probes) if scope.sees(f["project"])]
    return {"items": found, "total": len(found), "limit": len(found), "offset": 0}


@router.post("/probes", status_code=status.HTTP_201_CREATED, tags=["probes"], responses=ERRORS)
async def create_probe(body: ProbeIn, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    """Save a probe: a test (`test_id`) or a small inline `definition`, executed every
    `interval_s` (at least 30 s) and judged Healthy / Degraded / Unhealthy."""
    probe_id = await probes.save(p, scope, body)
    return probes.view(await probes.probe(p, scope, probe_id))


@router.get("/probes/{probe_id}", tags=["probes"], responses=error_responses(404))
async def get_probe(probe_id: str, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    return probes.view(await probes.probe(p, scope, probe_id))


@router.put("/probes/{probe_id}", tags=["probes"], responses=ERRORS)
async def update_probe(
    probe_id: str, body: ProbeIn, p: PlatformDep, scope: ScopeDep
) -> dict[str, Any]:
    await probes.save(p, scope, body, probe_id)
    return probes.view(await probes.probe(p, scope, probe_id))


@router.delete(
    "/probes/{probe_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["probes"],
    responses=error_responses(403, 404),
)
async def delete_probe(probe_id: str, p: PlatformDep, scope: ScopeDep) -> None:
    """Delete the probe, its history and its secrets (its execution runs stay)."""
    await probes.delete(p, scope, probe_id)


@router.get("/probes/{probe_id}/history", tags=["probes"], responses=error_responses(404))
async def probe_history(
    probe_id: str, p: PlatformDep, scope: ScopeDep, limit: Limit = 100
) -> dict[str, Any]:
    """Executions, newest first: health (null: not judged), reason, MOS, post-dial
    delay, success (percent of calls, or of registrations for a registration probe);
    run_kept is false once CALLMETER_PROBE_RETENTION_DAYS deleted the execution's run."""
    await probes.probe(p, scope, probe_id)
    items = await query(p, rows.history, probe_id, limit)
    return {"items": items, "total": len(items), "limit": limit, "offset": 0}


@router.get("/projects/{project}/webhooks", tags=["probes"], responses=error_responses(404))
async def get_project_webhooks(project: str, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    probes.project_scope(scope, project, VIEWER)
    return probes.webhooks_view(await query(p, rows.project_webhooks, project))


@router.put("/projects/{project}/webhooks", tags=["probes"], responses=ERRORS)
async def set_project_webhooks(
    project: str, body: ProjectWebhooksIn, p: PlatformDep, scope: ScopeDep
) -> dict[str, Any]:
    """Replace the project's webhooks (Admin): each probe health change is POSTed to
    each, signed (X-CallMeter-Signature) like a test's webhooks, retried, logged."""
    await probes.set_webhooks(p, scope, project, body)
    return probes.webhooks_view(await query(p, rows.project_webhooks, project))


class StatusPageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public: bool


def status_view(slug: str | None) -> dict[str, Any]:
    return {"public": slug is not None, "path": f"/status/{slug}" if slug else None}


@router.get("/projects/{project}/status-page", tags=["probes"], responses=error_responses(404))
async def get_status_page(project: str, p: PlatformDep, scope: ScopeDep) -> dict[str, Any]:
    probes.project_scope(scope, project, VIEWER)
    return status_view(await query(p, rows.status_slug, project))


@router.put("/projects/{project}/status-page", tags=["probes"], responses=ERRORS)
async def set_status_page(
    project: str, body: StatusPageIn, p: PlatformDep, scope: ScopeDep
) -> dict[str, Any]:
    """Opt the project in to (or out of) a public, read-only status page of its probes
    at an unguessable path (Admin): names, health and recent history, nothing else."""
    return status_view(await probes.set_status_page(p, scope, project, body.public))
