"""JSON under /api/v1 for users, organisations, members, projects and API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from callmeter_events import AccessRole

from . import accounts
from .authz import PrincipalDep
from .deps import PlatformDep
from .errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["access"])


class NewUser(BaseModel):
    username: str
    password: str = Field(description="at least 10 characters; stored as an argon2id hash")


class NewPassword(BaseModel):
    password: str


class NewOrg(BaseModel):
    org: str


class NewProject(BaseModel):
    project: str


class Membership(BaseModel):
    role: AccessRole | None = Field(description="null: no longer a member")


class NewKey(BaseModel):
    name: str
    role: AccessRole


@router.get("/me")
async def me(p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Who the request comes from and its roles."""
    return {
        "actor": who.actor,
        "username": who.username,
        "everything": who.everything.value if who.everything else None,
        "orgs": {o: r.value for o, r in who.org_roles.items()},
        "projects": {pr: r.value for pr, r in who.project_roles.items()},
    }


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=error_responses(403, 409))
async def create_user(body: NewUser, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    await accounts.create_user(p, who, body.username, body.password)
    return {"username": body.username}


@router.put("/users/{username}/password", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(
    username: str, body: NewPassword, p: PlatformDep, who: PrincipalDep
) -> None:
    await accounts.reset_password(p, who, username, body.password)


@router.post("/orgs", status_code=status.HTTP_201_CREATED, responses=error_responses(403, 409))
async def create_org(body: NewOrg, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    await accounts.create_org(p, who, body.org)
    return {"org": body.org}


@router.get("/orgs/{org}", responses=error_responses(403, 404))
async def get_org(org: str, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Members, projects, API keys and the audit trail (Admins)."""
    return await accounts.org_view(p, who, org)


@router.delete("/orgs/{org}", responses=error_responses(403, 404, 409))
async def delete_org(org: str, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Owners only: deletes the organisation with its projects' runs, tests,
    registrars, pools and audio, and destroys their secrets (crypto-shredding). Its
    project names are never used again. 409 while one of its runs is active."""
    return await accounts.delete_org(p, who, org)


@router.put("/orgs/{org}/members/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def set_member(
    org: str, username: str, body: Membership, p: PlatformDep, who: PrincipalDep
) -> None:
    await accounts.set_member(p, who, org, username, body.role)


@router.post("/orgs/{org}/projects", status_code=status.HTTP_201_CREATED)
async def create_project(
    org: str, body: NewProject, p: PlatformDep, who: PrincipalDep
) -> dict[str, Any]:
    await accounts.create_project(p, who, org, body.project)
    return {"org": org, "project": body.project}


@router.post("/projects/{project}/keys", status_code=status.HTTP_201_CREATED)
async def create_key(
    project: str, body: NewKey, p: PlatformDep, who: PrincipalDep
) -> dict[str, Any]:
    """A key for this project with this role; `key` is in this answer only."""
    return await accounts.create_key(p, who, project, body.role, body.name)


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: str, p: PlatformDep, who: PrincipalDep) -> None:
    await accounts.revoke_key(p, who, key_id)
