"""Authentication: who a request comes from, on every route (JSON, HTML, SSE).

A request is from
- a Bearer key (`Authorization: Bearer <key>`): a CALLMETER_API_KEYS key (an Owner
  of every project, or of its `PROJECT:`), or a key created in the UI (its project
  and role, services/api/keys.py); a wrong key is 401. Bearer requests need no
  CSRF token: a browser never adds that header by itself;
- a session cookie (after /login), whose state-changing requests carry the
  session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`), else 403;
- nobody: 401 for /api/v1 (and any request not asking for HTML), a redirect to
  /login for a page.

An installation with no user and no CALLMETER_API_KEYS is unclaimed: it serves
nothing to anybody until it is claimed. Every page redirects to /setup, which says
so and creates the first administrator with the token `callmeter up` prints;
every JSON and SSE route answers 401. Always open, claimed or not: /login, /setup,
the probes (/healthz, /readyz), /static and the API's documentation.

The middleware leaves the caller on `request.state.principal`; what the caller
may do is decided by `authz.require`, a dependency of each route.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response

from callmeter_common.api_keys import ApiKey, match_key
from callmeter_common.secrets_hash import key_hash, same
from callmeter_events import AccessRole, Event, TestDefinition
from callmeter_projections.access import DEFAULT_ORG
from callmeter_storage import sessions
from callmeter_storage.readmodels import projection_of

from . import errors, service
from .authz import authorize, forbidden
from .deps import Platform
from .errors import ApiError, error_body
from .principal import CURRENT, NOBODY, Principal

PROTECTED = "/api/v1"
SESSION_COOKIE = "callmeter_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Open without credentials: logging in, the first-admin setup, probes, assets, API docs.
PUBLIC_PATHS = ("/login", "/setup", "/healthz", "/readyz", "/docs", "/openapi.json")
PUBLIC_PREFIXES = ("/static/", "/docs/", "/status/")  # /status/: opted-in status pages
KEY_USE_EVERY_S = 60.0  # a key's last-used time is written at most this often per process


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_api(path: str) -> bool:
    return path == PROTECTED or path.startswith(PROTECTED + "/")


def env_principal(key: ApiKey, p: Platform) -> Principal:
    """A CALLMETER_API_KEYS key: Owner of everything, or of its project."""
    state = p.access.state
    if key.project is None:
        return Principal("env-key", everything=AccessRole.OWNER, project_org=state.project_org)
    return Principal(
        f"env-key:{key.project}",
        project_roles={key.project: AccessRole.OWNER},
        project_org=state.project_org,
    )


def user_principal(p: Platform, username: str, csrf: str | None) -> Principal:
    state = p.access.state
    return Principal(
        f"user:{username}",
        org_roles=state.orgs_of(username),
        project_org=state.project_org,
        username=username,
        csrf=csrf,
    )


class Authenticator:
    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self.keys = keys
        self._key_written: dict[str, float] = {}

    async def identify(self, request: Request, p: Platform) -> Principal | None | Response:
        """The caller; None: no credentials; a Response: refused (a wrong key)."""
        header = request.headers.get("authorization", "")
        if header:
            return await self._bearer(header, p)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            found = await service.query(p, sessions.find, key_hash(token))
            user = p.access.state.users.get(found.username) if found else None
            if found is not None and user is not None:
                if found.created_at >= user.sessions_valid_from:
                    return user_principal(p, user.username, found.csrf)
        return None

    async def _bearer(self, header: str, p: Platform) -> Principal | Response:
        env = match_key(header, self.keys)
        if env is not None:
            return env_principal(env, p)
        scheme, _, token = header.partition(" ")
        key = p.access.state.key_by_hash(key_hash(token.strip()))
        if scheme.lower() != "bearer" or key is None:
            body = error_body(
                "unauthorized", "a valid API key is required: Authorization: Bearer <key>"
            )
            return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})
        await self._used(p, key.key_id)
        return Principal(
            f"key:{key.prefix}",
            project_roles={key.project: key.role},
            project_org=p.access.state.project_org,
        )

    async def _used(self, p: Platform, key_id: str) -> None:
        now = time.monotonic()
        if now - self._key_written.get(key_id, -KEY_USE_EVERY_S) >= KEY_USE_EVERY_S:
            self._key_written[key_id] = now
            await service.query(p, sessions.key_used, key_id, datetime.now(UTC))


def enforced(p: Platform, keys: tuple[ApiKey, ...]) -> bool:
    return bool(keys) or p.access.claimed


def install(app: FastAPI, keys: tuple[ApiKey, ...]) -> None:
    authenticator = Authenticator(keys)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):  # type: ignore[no-untyped-def]
        path = request.url.path
        p: Platform | None = getattr(request.app.state, "platform", None)
        principal: Principal | None = None
        if p is not None and not is_public(path):
            found = await authenticator.identify(request, p)
            if isinstance(found, Response):
                return found
            if found is None:
                return unauthenticated(request, claimed=enforced(p, keys))
            principal = found
        elif p is not None and request.headers.get("authorization") is None:
            found = await authenticator.identify(request, p)  # /login and /setup show who is in
            principal = found if isinstance(found, Principal) else None
        request.state.principal = principal or NOBODY
        token = CURRENT.set(principal or NOBODY)
        try:
            response: Response = await call_next(request)
        finally:
            CURRENT.reset(token)
        return response


UNCLAIMED = (
    "this installation is not claimed yet: create the first administrator with the "
    "setup link `callmeter up` printed (/setup?token=...), or set CALLMETER_API_KEYS"
)


def unauthenticated(request: Request, claimed: bool) -> Response:
    """401 for the API and SSE; a page goes to /login, or, while nobody can log in
    yet, to /setup (which says how the installation is claimed)."""
    path = request.url.path
    if is_api(path) or "text/html" not in request.headers.get("accept", "text/html"):
        message = "log in, or send an API key: Authorization: Bearer <key>"
        body = error_body("unauthorized", message if claimed else UNCLAIMED)
        return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})
    if not claimed:
        return RedirectResponse("/setup", 303)
    if request.method in SAFE_METHODS:
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?next=" + quote(target, safe=""), 303)
    return RedirectResponse("/login", 303)


async def check_csrf(request: Request) -> None:
    """An app-wide dependency: a state-changing request of a session carries its token."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if request.method in SAFE_METHODS or principal is None or principal.csrf is None:
        return
    given = request.headers.get(CSRF_HEADER, "")
    if not given and "urlencoded" in request.headers.get("content-type", ""):
        # The pages post plain urlencoded forms (html_tests.posted reads the same body).
        fields = parse_qs((await request.body()).decode(errors="replace"))
        given = (fields.get(CSRF_FIELD) or [""])[0]
    if not given or not same(given, principal.csrf):
        raise ApiError(403, "csrf", "missing or wrong CSRF token: reload the page and try again")


async def ensure_visible(
    p: Platform, principal: Principal, name: str, value: str, field: str = ""
) -> None:
    """404 (as for an unknown id) unless the caller may see run or test `value`."""
    await authorize(p, principal, AccessRole.VIEWER, name, value, field)


def own_definition(
    principal: Principal,
    definition: TestDefinition,
    stored: dict[str, Any] | None = None,
    role: AccessRole = AccessRole.EDITOR,
) -> TestDefinition:
    """A test lands in the caller's one project when it names none; naming a project
    the caller may not edit is forbidden, and so is changing the webhooks (of
    `stored`, the saved definition being edited) without the Admin role."""
    only = principal.project
    if only is not None and "project" not in definition.model_fields_set:
        definition = definition.model_copy(update={"project": only})
    if not principal.may(role, definition.project):
        if only is not None:
            raise ApiError(
                403,
                "forbidden",
                f"project: this API key may only use project {only!r}",
                "project",
            )
        raise ApiError(
            403,
            "forbidden",
            f"project: you may not save tests in project {definition.project!r}",
            "project",
        )
    # By URL: a secret is write-only (a reference is stored, the form shows a mask).
    before = [w.url for w in TestDefinition.model_validate(stored).webhooks] if stored else []
    after = [w.url for w in definition.webhooks]
    if after != before and not principal.may(AccessRole.ADMIN, definition.project):
        raise ApiError(
            403, "forbidden", "webhooks: only an Admin adds or changes webhooks", "webhooks"
        )
    return definition


def system_view_allowed(principal: Principal) -> None:
    """The installation's view (streams, disk, every run): Owners of everything and
    Admins of the default organisation."""
    if principal.everything is not None and not principal.project_roles:
        return
    role = principal.org_roles.get(DEFAULT_ORG)
    if role is None or not role.allows(AccessRole.ADMIN):
        raise forbidden(AccessRole.ADMIN, "") from None


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


async def event_visible(p: Platform, principal: Principal, seq: int, event: Event) -> bool:
    if principal.everything is not None:
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
    return project is not None and principal.sees(project)


SCHEME = "bearerAuth"


def document(app: FastAPI) -> None:
    """Declare the Bearer scheme in /openapi.json as required by every /api/v1
    operation (a session cookie works too; without either: 401)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "API key as `Authorization: Bearer <key>` (or a logged-in session); "
                "without one every operation answers 401, also while the installation "
                "is not claimed yet."
            ),
        }
        security: list[dict[str, list[str]]] = [{SCHEME: []}]
        for path, operations in schema.get("paths", {}).items():
            if path == PROTECTED or path.startswith(PROTECTED + "/"):
                for operation in operations.values():
                    operation["security"] = security
        errors.document(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
