"""Pages for logging in, the first-admin setup, the account and an organisation's
administration (members, projects, API keys, audit trail)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callmeter_events import AccessRole

from . import accounts
from .auth import SESSION_COOKIE
from .authz import PrincipalDep
from .deps import PlatformDep
from .errors import ApiError
from .html_tests import posted
from .pages import render

router = APIRouter(include_in_schema=False)


def _next(target: str) -> str:
    """Only a path of this site (never //host or a URL) is followed after logging in."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def with_session(request: Request, response: Response, token: str) -> Response:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(accounts.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(p: PlatformDep, next: str = "/") -> HTMLResponse:
    return render("login.html", next=_next(next), claimed=p.access.claimed)


@router.post("/login")
async def login(request: Request, p: PlatformDep) -> Response:
    f = await posted(request)
    client = request.client.host if request.client else "?"
    try:
        token, _ = await accounts.login(p, f.get("username", ""), f.get("password", ""), client)
    except ApiError as exc:
        return render(
            "login.html",
            exc.status,
            next=_next(f.get("next", "/")),
            error=exc.message,
            username=f.get("username", ""),
            claimed=p.access.claimed,
        )
    return with_session(request, RedirectResponse(_next(f.get("next", "/")), 303), token)


@router.post("/logout")
async def logout(request: Request, p: PlatformDep, who: PrincipalDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        await accounts.logout(p, token, who)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/setup", response_class=HTMLResponse)
async def setup_page(p: PlatformDep, token: str = "") -> Response:
    if p.access.claimed:
        return RedirectResponse("/login", 303)
    return render("setup.html", token=token)


@router.post("/setup")
async def setup(request: Request, p: PlatformDep) -> Response:
    f = await posted(request)
    username, password = f.get("username", ""), f.get("password", "")
    try:
        await accounts.setup_first_admin(p, f.get("token", ""), username, password)
        token, _ = await accounts.start_session(p, username)
    except ApiError as exc:
        return render(
            "setup.html",
            exc.status,
            token=f.get("token", ""),
            error=exc.message,
            username=username,
        )
    return with_session(request, RedirectResponse("/", 303), token)


@router.get("/account", response_class=HTMLResponse)
async def account_page(who: PrincipalDep) -> HTMLResponse:
    return render("account.html", who=who, done=False)


@router.post("/account/password")
async def change_password(request: Request, p: PlatformDep, who: PrincipalDep) -> Response:
    f = await posted(request)
    if who.username is None:
        raise ApiError(403, "forbidden", "only a logged-in user has a password")
    try:
        token, _ = await accounts.change_password(
            p, who.username, f.get("current_password", ""), f.get("new_password", "")
        )
    except ApiError as exc:
        return render("account.html", exc.status, who=who, error=exc.message, done=False)
    return with_session(request, render("account.html", who=who, done=True), token)


@router.get("/orgs/{org}", response_class=HTMLResponse)
async def org_page(org: str, p: PlatformDep, who: PrincipalDep, new_key: str = "") -> HTMLResponse:
    view = await accounts.org_view(p, who, org)
    return render("org.html", **view, roles=[r.value for r in AccessRole], who=who)


async def _org_form(request: Request, p: Any, who: Any, org: str) -> Response:
    """Every form of the organisation page posts here with an `op`."""
    f = await posted(request)
    op = f.get("op", "")
    extra: dict[str, Any] = {}
    try:
        if op == "member":
            role = AccessRole(f["role"]) if f.get("role") else None
            if f.get("password"):
                await accounts.create_user(p, who, f.get("username", ""), f["password"])
            await accounts.set_member(p, who, org, f.get("username", ""), role)
        elif op == "org":  # on the default organisation's page: its Owners make others
            await accounts.create_org(p, who, f.get("org", ""))
            return RedirectResponse(f"/orgs/{f['org']}", 303)
        elif op == "project":
            await accounts.create_project(p, who, org, f.get("project", ""))
        elif op == "key":
            role = AccessRole(f.get("role", "viewer"))
            extra["created"] = await accounts.create_key(
                p, who, f.get("project", ""), role, f.get("name", "")
            )
        elif op == "revoke":
            await accounts.revoke_key(p, who, f.get("key_id", ""))
        elif op == "delete_org":
            if f.get("confirm", "") != org:
                message = f"confirm: type {org!r} to delete the organisation"
                raise ApiError(422, "validation_error", message, "confirm")
            await accounts.delete_org(p, who, org)
            return RedirectResponse("/", 303)
        else:
            raise ApiError(422, "validation_error", f"op: unknown {op!r}", "op")
    except (ApiError, ValueError) as exc:
        if isinstance(exc, ApiError) and exc.status == 404:
            raise
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        view = await accounts.org_view(p, who, org)
        code = exc.status if isinstance(exc, ApiError) else 422
        return render(
            "org.html", code, **view, roles=[r.value for r in AccessRole], who=who, error=message
        )
    if extra:  # the key is shown once, on this answer: never in a URL
        view = await accounts.org_view(p, who, org)
        return render(
            "org.html", 201, **view, roles=[r.value for r in AccessRole], who=who, **extra
        )
    return RedirectResponse(f"/orgs/{org}", 303)


@router.post("/orgs/{org}")
async def org_form(org: str, request: Request, p: PlatformDep, who: PrincipalDep) -> Response:
    return await _org_form(request, p, who, org)
