"""One error shape for the whole API: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from .pages import render

log = logging.getLogger(__name__)
# Model-level checks put the field path at the start of the message ("groups.1.calls: ...").
_FIELD_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.]*): (.*)$", re.S)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse | HTMLResponse:
        # Runs outside the other middlewares, so it answers pages with the page itself.
        log.exception("unhandled error on %s", request.url.path)
        message = "unexpected error; the API log has the details"
        wants_html = "text/html" in request.headers.get("accept", "")
        if wants_html and not request.url.path.startswith("/api/"):
            return render("error.html", 500, status=500, message=message)
        return JSONResponse(error_body("internal_error", message), status_code=500)
