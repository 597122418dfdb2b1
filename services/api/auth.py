"""API keys for automation: with CALLMETER_API_KEYS set, /api/v1 needs a Bearer token.

A middleware rather than a router dependency so that every router mounted
under /api/v1 (including ones other modules add) is covered the same way.
Pages stay open: they are meant for a browser on a trusted network.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request
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
    token = token.strip().encode()
    # Check every key, so timing does not reveal which one came close.
    return any([hmac.compare_digest(token, k.encode()) for k in keys])  # noqa: C419


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
