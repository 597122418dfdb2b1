"""One error shape for the whole API: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .pages import render

log = logging.getLogger(__name__)
# Model-level checks put the field path at the start of the message ("groups.1.calls: ...").
_FIELD_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.]*): (.*)$", re.S)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error the API answers: `{"error": {"code", "message", "field"}}`."""

    error: ErrorDetail


# Why each error status can come, as /openapi.json documents it.
ERROR_STATUSES: dict[int, str] = {
    400: "The body is not JSON.",
    401: (
        "No valid API key or session; also every request while the installation is not "
        "claimed yet (no user, no CALLMETER_API_KEYS)."
    ),
    403: "The caller's role is too low for this, in the project or organisation it names.",
    404: "Unknown id, or one of a project or organisation the caller may not see (the same answer).",
    409: "Conflicts with the current state: the run has already finished, the name exists, a run is still active.",
    413: "The request body is larger than the server accepts (CALLMETER_MAX_BODY_BYTES).",
    422: "A field is invalid: `error.field` names it.",
    503: "Saved, but the read models did not show it in time; retry the read.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route for these error statuses."""
    return {s: {"model": ErrorBody, "description": ERROR_STATUSES[s]} for s in statuses}


def document(schema: dict[str, Any]) -> None:
    """Add to an OpenAPI document the errors every JSON operation can answer, by what it
    is: each /api/v1 operation may answer 401, 403 (a role too low) and 422, one with an
    id in its path 404, one that writes 413 and 503, one with a body 400. Route-specific
    ones (409) are declared on their routes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components["ErrorBody"] = body
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            statuses = [401, 403, 422]
            if "{" in path:
                statuses.append(404)
            if method in ("post", "put", "delete"):
                statuses += [413, 503]
            if "requestBody" in operation:
                statuses.append(400)
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(
                    str(status), {"description": ERROR_STATUSES[status], "content": ref}
                )


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413: by its declared length, or, for a
    streamed (chunked) body, by reading at most `limit` bytes of it before the app does."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                await self._refuse(scope, send)
                return
            await self.app(scope, receive, send)  # the server holds the body to its length
            return
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await self._refuse(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"the request body is larger than {self.limit} bytes"
        response = JSONResponse(error_body("payload_too_large", message), status_code=413)
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "field": field}}


def validation_field_and_message(err: dict[str, object]) -> tuple[str | None, str]:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]  # type: ignore[attr-defined]
    msg = str(err.get("msg", "invalid"))
    match = _FIELD_PREFIX.match(msg)
    if match and (not loc or err.get("type") == "value_error"):
        # A nested model's check names its own field ("digits: ..."): prefix where it is.
        named = ".".join([*loc, match.group(1)])
        return named, f"{named}: {match.group(2)}"
    field = ".".join(loc) or None
    return field, f"{field}: {msg}" if field else msg


def allowed_methods(request: Request) -> list[str]:
    """The methods /openapi.json documents for the request's path (empty if undocumented)."""
    app = request.app
    patterns = getattr(app.state, "path_methods", None)
    if patterns is None:
        patterns = [
            (compile_path(path)[0], sorted(m.upper() for m in operations))
            for path, operations in app.openapi().get("paths", {}).items()
        ]
        app.state.path_methods = patterns
    path = request.url.path
    return next((methods for regex, methods in patterns if regex.match(path)), [])


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [validation_field_and_message(dict(e)) for e in exc.errors()]
        field, message = errors[0]
        body = error_body("validation_error", message, field)
        body["error"]["details"] = [{"field": f, "message": m} for f, m in errors]  # type: ignore[index]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Every method the path has, not only those of the first route that matched it.
            headers["Allow"] = ", ".join(allowed_methods(request) or [headers.get("Allow", "")])
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(
        request: Request, exc: psycopg.OperationalError
    ) -> JSONResponse | HTMLResponse:
        # PostgreSQL restarting or unreachable: the platform's trouble, not the request's.
        log.warning("database unavailable on %s: %s", request.url.path, exc)
        message = "PostgreSQL is unavailable; retry in a moment (see /readyz)"
        if _wants_page(request):
            return render("error.html", 503, status=503, message=message)
        return JSONResponse(error_body("database_unavailable", message), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse | HTMLResponse:
        # Runs outside the other middlewares, so it answers pages with the page itself.
        log.exception("unhandled error on %s", request.url.path)
        message = "unexpected error; the API log has the details"
        if _wants_page(request):
            return render("error.html", 500, status=500, message=message)
        return JSONResponse(error_body("internal_error", message), status_code=500)


def _wants_page(request: Request) -> bool:
    wants_html = "text/html" in request.headers.get("accept", "")
    return wants_html and not request.url.path.startswith("/api/")
