"""API keys for automation: with CALLMETER_API_KEYS set, /api/v1 needs a Bearer token.

A middleware rather than a router dependency so that every router mounted
under /api/v1 (including ones other modules add) is covered the same way.
Pages stay open: they are meant for a browser on a trusted network.

A key is `KEY` (every project) or `PROJECT:KEY` (only that project's tests and
runs). The middleware leaves the caller's project on `request.state.project`
(None: every project); `guard`, a dependency of every /api/v1 router, answers a
run or test of another project with the same 404 as an unknown id. The keys
themselves are parsed in `callmeter_common.api_keys`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from callmeter_common.api_keys import ApiKey, match_key
from callmeter_events import Event, TestDefinition
from callmeter_storage.readmodels import projection_of

from . import errors, service
from .deps import Platform, PlatformDep, Scope, ScopeDep
from .errors import ApiError, error_body

PROTECTED = "/api/v1"


def install(app: FastAPI, keys: tuple[ApiKey, ...]) -> None:
    if not keys:
        return

    @app.middleware("http")
    async def require_key(request: Request, call_next):  # type: ignore[no-untyped-def]
        path = request.url.path
        if path == PROTECTED or path.startswith(PROTECTED + "/"):
            key = match_key(request.headers.get("authorization", ""), keys)
            if key is None:
                body = error_body(
                    "unauthorized", "a valid API key is required: Authorization: Bearer <key>"
                )
                return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})
            request.state.project = key.project
        response: Response = await call_next(request)
        return response


# What the caller may see. Unknown ids and other projects' ids get the same answer.
_PROJECT_OF = {
    "run_id": ("run", "SELECT doc->'definition'->>'project' FROM runs WHERE run_id = %s"),
    "test_id": (
        "test",
        "SELECT doc->'definition'->>'project' FROM tests WHERE test_id = %s AND NOT deleted",
    ),
}


async def ensure_visible(p: Platform, scope: Scope, name: str, value: str, field: str = "") -> None:
    """404 (as for an unknown id) unless the caller may see run or test `value`;
    `name` is "run_id" or "test_id"."""
    if scope.project is None:
        return
    kind, sql = _PROJECT_OF[name]

    def project(conn: Any) -> str | None:
        row = conn.execute(sql, (value,)).fetchone()
        return row[0] if row else None

    if not scope.sees(await service.query(p, project)):
        raise ApiError(404, "not_found", f"no {kind} {value!r}", field or name)


async def guard(request: Request, p: PlatformDep, scope: ScopeDep) -> None:
    """Every /api/v1 route with a run or test in its path: hidden from other projects."""
    for name in ("run_id", "test_id"):
        if name in request.path_params:
            await ensure_visible(p, scope, name, request.path_params[name])


def own_definition(scope: Scope, definition: TestDefinition) -> TestDefinition:
    """A test a scoped key saves lands in its project; naming another one is forbidden."""
    if scope.project is None:
        return definition
    if "project" not in definition.model_fields_set:
        return definition.model_copy(update={"project": scope.project})
    if definition.project != scope.project:
        raise ApiError(
            403,
            "forbidden",
            f"project: this API key may only use project {scope.project!r}",
            "project",
        )
    return definition


def event_project(p: Platform, event: Event) -> str | None:
    """The project of a test or run event, from the event or the folded read models."""
    definition = getattr(event, "definition", None)
    if isinstance(definition, TestDefinition):
        return definition.project
    models = p.projector.models
    run = models.runs.runs.get(getattr(event, "run_id", None) or "")
    if run is not None:
        return run.definition.project
    test = models.tests.get(getattr(event, "test_id", None) or "")
    return test.definition.project if test is not None else None


async def event_visible(p: Platform, scope: Scope, seq: int, event: Event) -> bool:
    if scope.project is None:
        return True
    # The stream can be read ahead of this process's fold: give the fold a moment.
    for _ in range(40):
        project = event_project(p, event)
        if project is not None or p.projector.models.positions[projection_of(event)] >= seq:
            break
        await asyncio.sleep(0.05)
    run_id = getattr(event, "run_id", None)
    if project is None and run_id:  # a settled run has left memory: ask its row
        project = await asyncio.to_thread(p.projector.run_project, run_id)
    return scope.sees(project)


SCHEME = "bearerAuth"


def document(app: FastAPI, required: bool) -> None:
    """Declare the Bearer scheme in /openapi.json for every /api/v1 operation: required
    when API keys are configured, optional (`{}` allowed too) when they are not, so
    generated clients and /docs' Authorize button work either way."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        state = (
            "required: the server has CALLMETER_API_KEYS set"
            if required
            else ("optional: this server has no CALLMETER_API_KEYS, so requests need no token")
        )
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": f"API key as `Authorization: Bearer <key>`; {state}.",
        }
        security: list[dict[str, list[str]]] = [{SCHEME: []}]
        if not required:
            security.append({})  # no token is fine too
        for path, operations in schema.get("paths", {}).items():
            if path == PROTECTED or path.startswith(PROTECTED + "/"):
                for operation in operations.values():
                    operation["security"] = security
        errors.document(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
