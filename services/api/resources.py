"""Registrars and SIP account pools: a project's resources that tests reference by id.

A pool's passwords go to the secret store (owner `pool:<id>`); the pool holds their
references. Starting a run copies the registrar's settings and the pool's free
accounts (those no active run holds) into the run's definition (`resolve`).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from callmeter_events import (
    TERMINAL_STATUSES,
    AccessRole,
    Registrar,
    SipAccount,
    TestDefinition,
)
from callmeter_projections.runs import RunsProjection
from callmeter_storage import named, resources, secrets

from .audit import audit
from .deps import Platform
from .errors import ApiError
from .principal import Principal

VIEWER, EDITOR = AccessRole.VIEWER, AccessRole.EDITOR

T = TypeVar("T")


async def query(p: Platform, fn: Callable[..., T], *args: Any) -> T:
    def run() -> T:
        with p.pool.connection() as conn:
            return fn(conn, *args)

    return await asyncio.to_thread(run)


Project = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 _.-]+$")
Name = Field(min_length=1, max_length=100)


class RegistrarIn(Registrar):
    """A registrar as saved: its settings (host, port, transport, domain, outbound
    proxy, expiry) under a name, in a project."""

    name: str = Name
    project: str = Project


class PoolIn(BaseModel):
    """An account pool as saved: accounts as a list, or `csv` text (one account a line,
    `username,password[,auth_username]`; a header line starting `username` is skipped)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Name
    project: str = Project
    accounts: list[SipAccount] = Field(default_factory=list, max_length=10_000)
    csv: str | None = Field(default=None, max_length=2_000_000)

    @model_validator(mode="after")
    def _unique(self) -> PoolIn:
        seen: set[str] = set()
        for i, account in enumerate(self.accounts):
            if account.username in seen:
                raise ValueError(f"accounts.{i}.username: {account.username!r} is listed twice")
            seen.add(account.username)
        return self


def parse_csv(text: str) -> list[SipAccount]:
    """CSV lines -> accounts; an error names the line (field `csv`)."""
    out: list[SipAccount] = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#") or (n == 1 and cells[0] == "username"):
            continue
        if len(cells) > 3:
            raise ApiError(422, "validation_error", f"csv: line {n}: more than 3 columns", "csv")
        block: dict[str, Any] = {"username": cells[0]}
        if len(cells) > 1 and cells[1]:
            block["password"] = cells[1]
        if len(cells) > 2 and cells[2]:
            block["auth_username"] = cells[2]
        try:
            out.append(SipAccount.model_validate(block))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "username"
            message = f"csv: line {n}: {where}: {first['msg']}"
            raise ApiError(422, "validation_error", message, "csv") from None
    return out


def in_use(runs: RunsProjection, pool_id: str) -> set[str]:
    """Usernames of the pool that active runs hold."""
    return {
        a.username
        for run in runs.runs.values()
        if run.status not in TERMINAL_STATUSES
        for g in run.definition.groups
        if g.account_pool == pool_id
        for a in g.accounts[: g.endpoints]
    }


def pool_view(pool: dict[str, Any], busy: set[str]) -> dict[str, Any]:
    """A pool as answered: passwords write-only, with how many accounts are free."""
    accounts = [
        {
            "username": a["username"],
            "auth_username": a["auth_username"],
            "password_set": a["password_ref"] is not None,
            "in_use": a["username"] in busy,
        }
        for a in pool["accounts"]
    ]
    free = sum(1 for a in accounts if not a["in_use"])
    return {**pool, "accounts": accounts, "size": len(accounts), "free": free}


# --- reads with the project check ------------------------------------------------------


async def registrar(
    p: Platform, scope: Principal, registrar_id: str, field: str, role: AccessRole = VIEWER
) -> dict[str, Any]:
    """The registrar, 404 unless the caller sees its project, 403 below `role` there."""
    found = await query(p, resources.get_registrar, registrar_id)
    return visible(scope, found, f"no registrar {registrar_id!r}", field, role)


async def pool(
    p: Platform, scope: Principal, pool_id: str, field: str, role: AccessRole = VIEWER
) -> dict[str, Any]:
    """The pool, 404 unless the caller sees its project, 403 below `role` there."""
    found = await query(p, resources.get_pool, pool_id)
    return visible(scope, found, f"no account pool {pool_id!r}", field, role)


def visible(
    scope: Principal, found: dict[str, Any] | None, missing: str, field: str, role: AccessRole
) -> dict[str, Any]:
    """`found`, 404 (`missing`) unless the caller sees its project, 403 below `role`."""
    if found is None or not scope.sees(found["project"]):
        raise ApiError(404, "not_found", missing, field)
    _need(scope, role, found["project"])
    return found


def _need(scope: Principal, role: AccessRole, project: str) -> None:
    if not scope.may(role, project):
        raise ApiError(403, "forbidden", f"this needs the {role.value} role in project {project!r}")


def own_project(scope: Principal, body: RegistrarIn | PoolIn) -> str:
    """The project a write lands in (a one-project key's, when the body names none);
    the caller must be an Editor there."""
    only = scope.project
    if only is not None and "project" in body.model_fields_set and body.project != only:
        message = f"project: this API key may only use project {only!r}"
        raise ApiError(403, "forbidden", message, "project")
    project = only if only is not None else body.project
    if not scope.may(EDITOR, project):
        message = f"project: you may not change resources of project {project!r}"
        raise ApiError(403, "forbidden", message, "project")
    return project


# --- writes ----------------------------------------------------------------------------


async def save_registrar(
    p: Platform, scope: Principal, body: RegistrarIn, registrar_id: str | None = None
) -> str:
    project = own_project(scope, body)
    if registrar_id is not None:
        await registrar(p, scope, registrar_id, "registrar_id", EDITOR)
    action = "registrar_edited" if registrar_id else "registrar_created"
    registrar_id = registrar_id or resources.new_id("reg")
    doc = Registrar.model_validate(body.model_dump(exclude={"name", "project"})).model_dump()
    await _unique_name(p, "registrars", registrar_id, project, body.name)
    await query(p, resources.save_registrar, registrar_id, project, body.name, doc)
    await audit(p, scope.actor, action, project, registrar_id)
    return registrar_id


async def delete_registrar(p: Platform, scope: Principal, registrar_id: str) -> None:
    found = await registrar(p, scope, registrar_id, "registrar_id", EDITOR)
    await query(p, resources.delete_registrar, registrar_id)
    await audit(p, scope.actor, "registrar_deleted", found["project"], registrar_id)


async def _unique_name(p: Platform, table: str, own_id: str, project: str, name: str) -> None:
    if await query(p, named.name_taken, table, project, name, own_id):
        message = f"name: project {project!r} already has one named {name!r}"
        raise ApiError(422, "validation_error", message, "name")


async def save_pool(p: Platform, scope: Principal, body: PoolIn, pool_id: str | None = None) -> str:
    """Store the pool; passwords go to the secret store. An account given without a
    password keeps the one the pool already has for that username."""
    project = own_project(scope, body)
    accounts = list(body.accounts) + (parse_csv(body.csv) if body.csv else [])
    names = [a.username for a in accounts]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise ApiError(422, "validation_error", f"csv: {dup!r} is listed twice", "csv")
    before = {}
    action = "pool_edited" if pool_id else "pool_created"
    if pool_id is not None:
        old = await pool(p, scope, pool_id, "pool_id", EDITOR)
        before = {a["username"]: a["password_ref"] for a in old["accounts"]}
    pool_id = pool_id or resources.new_id("pool")
    await _unique_name(p, "account_pools", pool_id, project, body.name)
    owner = f"pool:{pool_id}"

    def write(conn: Any) -> None:
        rows = []
        with conn.transaction():
            for i, a in enumerate(accounts):
                if a.password is not None:
                    value = a.password.get_secret_value()
                    ref = secrets.put(conn, p.master_key, project, owner, "sip_password", value)
                elif a.password_ref is not None:
                    if a.password_ref not in before.values():
                        field = f"accounts.{i}.password_ref"
                        raise ApiError(422, "validation_error", f"{field}: no such secret", field)
                    ref = a.password_ref
                else:
                    ref = before.get(a.username)
                rows.append(
                    {"username": a.username, "auth_username": a.auth_username, "password_ref": ref}
                )
            resources.save_pool(conn, pool_id, project, body.name, rows)
            keep = {r["password_ref"] for r in rows if r["password_ref"]}
            secrets.shred_owned(conn, owner, keep)

    await query(p, write)
    await audit(p, scope.actor, action, project, pool_id)
    return pool_id


async def delete_pool(p: Platform, scope: Principal, pool_id: str) -> None:
    found = await pool(p, scope, pool_id, "pool_id", EDITOR)

    def delete(conn: Any) -> None:
        with conn.transaction():
            resources.delete_pool(conn, pool_id)
            secrets.shred_owned(conn, f"pool:{pool_id}")  # crypto-shredding

    await query(p, delete)
    await audit(p, scope.actor, "pool_deleted", found["project"], pool_id)


# --- tests that reference them ---------------------------------------------------------


def _project_only(project: str) -> Principal:
    """What a test of `project` may reference: that project's resources only."""
    return Principal(f"test-of:{project}", project_roles={project: AccessRole.VIEWER})


async def check_references(p: Platform, definition: TestDefinition) -> None:
    """A saved test may reference only registrars and pools of its own project
    (another's answers as an unknown id: 422 naming the field)."""
    scope = _project_only(definition.project)
    try:
        for i, g in enumerate(definition.groups):
            if g.registrar_id:
                await registrar(p, scope, g.registrar_id, f"groups.{i}.registrar_id")
            if g.account_pool:
                await pool(p, scope, g.account_pool, f"groups.{i}.account_pool")
    except ApiError as exc:
        message = f"{exc.field}: {exc.message} in project {definition.project!r}"
        raise ApiError(422, "validation_error", message, exc.field) from None


async def resolve(p: Platform, definition: TestDefinition) -> TestDefinition:
    """The definition a run starts with: referenced registrars and the pools' free
    accounts copied in (the scheduler rejects the run when too few are free)."""
    if not any(g.registrar_id or g.account_pool for g in definition.groups):
        return definition
    await check_references(p, definition)  # deleted since the test was saved: 422
    scope = _project_only(definition.project)
    groups = []
    for i, g in enumerate(definition.groups):
        update: dict[str, Any] = {}
        if g.registrar_id:
            reg = await registrar(p, scope, g.registrar_id, f"groups.{i}.registrar_id")
            update["registrar"] = Registrar.model_validate(
                {k: v for k, v in reg.items() if k not in ("id", "project", "name")}
            )
        if g.account_pool:
            found = await pool(p, scope, g.account_pool, f"groups.{i}.account_pool")
            busy = in_use(p.projector.models.runs, g.account_pool)
            free = [a for a in found["accounts"] if a["username"] not in busy]
            update["accounts"] = [SipAccount.model_validate(a) for a in free[: g.endpoints]]
        groups.append(g.model_copy(update=update))
    return definition.model_copy(update={"groups": groups})
