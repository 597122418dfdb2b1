"""API keys for automation: with CALLMETER_API_KEYS set, /api/v1 needs a Bearer token.

A middleware rather than a router dependency so that every router mounted
under /api/v1 (including ones other modules add) is covered the same way.
Pages stay open: they are meant for a browser on a trusted network.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from .errors import error_body

PROTECTED = "/api/v1"


def parse_keys(value: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in value.split(",") if k.strip())


def authorized(header: str, keys: tuple[str, ...]) -> bool:
    """True for `Bearer <one of keys>`; compared in constant time."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode()
    # Check every key, so timing does not reveal which one came close.
    return any([hmac.compare_digest(given, k.encode()) for k in keys])  # noqa: C419


def install(app: FastAPI, keys: tuple[str, ...]) -> None:
    if not keys:
        return

    @app.middleware("http")
    async def require_key(request: Request, call_next):  # type: ignore[no-untyped-def]
        path = request.url.path
        if path == PROTECTED or path.startswith(PROTECTED + "/"):
            if not authorized(request.headers.get("authorization", ""), keys):
                body = error_body("unauthorized", "a valid API key is required: "
                                  "Authorization: Bearer <key>")  # fmt: skip
                return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})
        response: Response = await call_next(request)
        return response


SCHEME = "bearerAuth"


def document(app: FastAPI, required: bool) -> None:
    """Declare the Bearer scheme in /openapi.json for every /api/v1 operation: required
    when API keys are configured, optional (`{}` allowed too) when they are not, so
    generated clients and /docs' Authorize button work either way."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description=app.description)  # fmt: skip
        state = "required: the server has CALLMETER_API_KEYS set" if required else (
            "optional: this server has no CALLMETER_API_KEYS, so requests need no token")  # fmt: skip
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": f"API key as `Authorization: Bearer <key>`; {state}.",
        }  # fmt: skip
        security: list[dict[str, list[str]]] = [{SCHEME: []}]
        if not required:
            security.append({})  # no token is fine too
        for path, operations in schema.get("paths", {}).items():
            if path == PROTECTED or path.startswith(PROTECTED + "/"):
                for operation in operations.values():
                    operation["security"] = security
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
