"""What the access routes do, shared by the JSON and HTML routers: users, sessions,
organisations, projects, members and API keys, each change an event."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from callmeter_common.demo import DEMO_TEST
from callmeter_common.secrets_hash import (
    DUMMY_HASH,
    hash_password,
    key_hash,
    new_api_key,
    verify_password,
)
from callmeter_events import (
    TERMINAL_STATUSES,
    AccessRole,
    ApiKeyCreated,
    ApiKeyRevoked,
    AuditRecorded,
    MembershipSet,
    OrganisationCreated,
    OrganisationDeleted,
    PasswordChanged,
    ProjectCreated,
    TestDefinition,
    UserCreated,
)
from callmeter_projections.access import DEFAULT_ORG
from callmeter_storage import probes, resources, sessions
from callmeter_storage import secrets as secrets_store

from . import service
from .authz import Principal, forbidden
from .deps import Platform
from .errors import ApiError

SESSION_TTL = timedelta(days=7)


def _password_hash(password: str, field: str = "password") -> str:
    try:
        return hash_password(password)
    except ValueError as exc:
        raise ApiError(
            422, "validation_error", f"{field}: {str(exc).split(': ', 1)[1]}", field
        ) from None


def _valid(model: Any, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise ApiError(422, "validation_error", f"{field}: {err['msg']}", field) from None


async def login(p: Platform, username: str, password: str, client: str) -> tuple[str, str]:
    """(session token, csrf) for a right password; 401, or 429 after too many failures."""
    keys = [f"user:{username}", f"addr:{client}"]
    wait = p.access.login_limit.retry_after(keys)
    if wait > 0:
        raise ApiError(429, "too_many_attempts", f"too many failed logins; retry in {wait:.0f} s")
    user = p.access.state.users.get(username)
    ok = verify_password(user.password_hash if user else DUMMY_HASH, password)
    if user is None or not ok:
        p.access.login_limit.failed(keys)
        await p.access.publish(
            AuditRecorded(actor=f"addr:{client}", action="login_failed", target=username)
        )
        raise ApiError(401, "unauthorized", "wrong username or password")
    token = await start_session(p, username)
    await p.access.publish(AuditRecorded(actor=f"user:{username}", action="login"))
    return token


async def start_session(p: Platform, username: str) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await service.query(p, _create_session, key_hash(token), username, csrf)
    return token, csrf


def _create_session(conn: Any, token_hash: str, username: str, csrf: str) -> None:
    sessions.create(conn, token_hash, username, csrf, SESSION_TTL)


async def logout(p: Platform, token: str, who: Principal) -> None:
    await service.query(p, sessions.end, key_hash(token))
    await p.access.publish(AuditRecorded(actor=who.actor, action="logout"))


async def setup_first_admin(p: Platform, token: str, username: str, password: str) -> None:
    """The first administrator: an Owner of the default organisation; only with the
    setup token `callmeter up` printed, and only while there is no user."""
    expected = p.settings.setup_token
    if not expected or not secrets.compare_digest(token.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "token: wrong or missing setup token", "token")
    if p.access.claimed:
        raise ApiError(409, "already_set_up", "the first administrator exists already; log in")
    setup = Principal("setup", everything=AccessRole.OWNER)
    await create_user(p, setup, username, password)
    await set_member(p, setup, DEFAULT_ORG, username, AccessRole.OWNER)
    if not await service.query(p, _any_test):  # a first start: the demo test to run
        demo = TestDefinition.model_validate(DEMO_TEST)
        await service.save_test(p, demo, actor=f"user:{username}")


def _any_test(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM tests WHERE NOT deleted LIMIT 1").fetchone() is not None


def need_org_role(p: Platform, who: Principal, org: str, role: AccessRole) -> None:
    """404 for an organisation the caller is no member of (or that does not exist);
    403 for a role below `role`."""
    mine = who.role_in_org(org)
    if mine is None or org not in p.access.state.orgs:
        raise ApiError(404, "not_found", f"no organisation {org!r}", "org")
    if not mine.allows(role):
        raise forbidden(role)


async def create_user(p: Platform, who: Principal, username: str, password: str) -> None:
    """By an Admin of any organisation (who then makes the user a member)."""
    if not (who.everything or any(r.allows(AccessRole.ADMIN) for r in who.org_roles.values())):
        raise forbidden(AccessRole.ADMIN)
    event = _valid(
        UserCreated, actor=who.actor, username=username, password_hash=_password_hash(password)
    )
    if username in p.access.state.users:
        raise ApiError(409, "exists", f"username: {username!r} is taken", "username")
    await p.access.publish(event)


async def change_password(p: Platform, username: str, current: str, new: str) -> tuple[str, str]:
    """A new password ends every session of the user; returns a new one for this browser."""
    user = p.access.state.users.get(username)
    if user is None or not verify_password(user.password_hash, current):
        raise ApiError(403, "forbidden", "current_password: wrong password", "current_password")
    event = PasswordChanged(
        actor=f"user:{username}",
        username=username,
        password_hash=_password_hash(new, "new_password"),
    )
    await p.access.publish(event)
    await service.query(p, sessions.end_all, username)
    return await start_session(p, username)


async def reset_password(p: Platform, who: Principal, username: str, new: str) -> None:
    """By an Owner of the default organisation (the installation's administrators)."""
    need_org_role(p, who, DEFAULT_ORG, AccessRole.OWNER)
    if username not in p.access.state.users:
        raise ApiError(404, "not_found", f"no user {username!r}", "username")
    await p.access.publish(
        PasswordChanged(actor=who.actor, username=username, password_hash=_password_hash(new))
    )
    await service.query(p, sessions.end_all, username)


async def create_org(p: Platform, who: Principal, org: str) -> None:
    """By an Owner of the default organisation, who becomes an Owner of the new one."""
    need_org_role(p, who, DEFAULT_ORG, AccessRole.OWNER)
    event = _valid(OrganisationCreated, actor=who.actor, org=org)
    if org in p.access.state.orgs:
        raise ApiError(409, "exists", f"org: {org!r} exists", "org")
    if org in p.access.state.deleted_orgs:  # its projects stay its own
        raise ApiError(409, "exists", f"org: {org!r} was deleted; choose another name", "org")
    await p.access.publish(event)
    if who.username:  # not through set_member: the caller is no member of it yet
        owner = MembershipSet(
            actor=who.actor, org=org, username=who.username, role=AccessRole.OWNER
        )
        await p.access.publish(owner)


async def delete_org(p: Platform, who: Principal, org: str) -> dict[str, Any]:
    """By an Owner of it (never the default organisation), once none of its runs is
    active: its finished runs and its tests are deleted (each audited), every secret
    of its projects destroyed (crypto-shredding: SIP passwords, webhook secrets), its
    registrars, pools, audio uploads, probes, project webhooks and status pages
    deleted; then OrganisationDeleted ends its
    members' and keys' access. Its project names stay its own: nobody can create
    them again, so no other organisation inherits anything. Returns what was done."""
    need_org_role(p, who, org, AccessRole.OWNER)
    if org == DEFAULT_ORG:
        raise ApiError(409, "default_org", "org: the default organisation cannot be deleted", "org")
    projects = p.access.state.projects_of(org)
    # Its probes first: they would start new runs while the rest is deleted (a probe's
    # execution still running answers 409 below; asked again, it has finished).
    dropped_probes = await service.query(p, _drop_probes, projects)
    runs = await service.query(p, _runs_of, projects)
    active = [run_id for run_id, status in runs if status not in TERMINAL_STATUSES]
    if active:
        message = f"org: stop its active runs first ({', '.join(active[:5])})"
        raise ApiError(409, "run_active", message, "org")
    for run_id, _ in runs:
        await service.delete_run(p, run_id, who.actor)
    tests = await service.query(p, _tests_of, projects)
    for test_id in tests:
        await service.delete_test(p, test_id, who.actor)

    def drop(conn: Any) -> dict[str, int]:
        with conn.transaction():
            done = resources.delete_projects(conn, projects)
            done["secrets"] = secrets_store.shred_projects(conn, projects)
            return done

    dropped = await service.query(p, drop)
    await p.access.publish(OrganisationDeleted(actor=who.actor, org=org))
    return {
        "org": org,
        "projects": projects,
        "runs": len(runs),
        "tests": len(tests),
        **dropped,
        **dropped_probes,
    }


def _drop_probes(conn: Any, projects: list[str]) -> dict[str, int]:
    with conn.transaction():
        return probes.delete_projects(conn, projects)


def _runs_of(conn: Any, projects: list[str]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT run_id, status FROM runs WHERE doc->'definition'->>'project' = ANY(%s)",
        (projects,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _tests_of(conn: Any, projects: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT test_id FROM tests WHERE NOT deleted AND doc->'definition'->>'project' = ANY(%s)",
        (projects,),
    ).fetchall()
    return [r[0] for r in rows]


async def set_member(
    p: Platform, who: Principal, org: str, username: str, role: AccessRole | None
) -> None:
    """Admins manage members; only an Owner makes or unmakes an Owner."""
    need_org_role(p, who, org, AccessRole.ADMIN)
    current = p.access.state.role_of(username, org)
    if AccessRole.OWNER in (role, current):
        need_org_role(p, who, org, AccessRole.OWNER)
    if username not in p.access.state.users:
        raise ApiError(404, "not_found", f"no user {username!r}", "username")
    await p.access.publish(MembershipSet(actor=who.actor, org=org, username=username, role=role))


async def create_project(p: Platform, who: Principal, org: str, project: str) -> None:
    """A project name belongs to one organisation. The default organisation owns every
    name no other has created, so another organisation may only create a name that has
    no tests or runs yet."""
    need_org_role(p, who, org, AccessRole.ADMIN)
    event = _valid(ProjectCreated, actor=who.actor, org=org, project=project)
    if project in p.access.state.project_org or (
        org != DEFAULT_ORG and await service.query(p, _project_used, project)
    ):
        raise ApiError(409, "exists", f"project: {project!r} is taken", "project")
    await p.access.publish(event)


def _project_used(conn: Any, project: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM tests WHERE doc->'definition'->>'project' = %(p)s)"
        " OR EXISTS (SELECT 1 FROM runs WHERE doc->'definition'->>'project' = %(p)s)",
        {"p": project},
    ).fetchone()
    return bool(row and row[0])


async def create_key(
    p: Platform, who: Principal, project: str, role: AccessRole, name: str
) -> dict[str, Any]:
    """A key for one project with one role, no higher than the creator's own: the key
    itself is in this answer only."""
    org = p.access.state.org_of(project)
    if who.role_in_org(org) is None:
        raise ApiError(404, "not_found", f"no project {project!r}", "project")
    need_org_role(p, who, org, AccessRole.ADMIN)
    mine = who.role_in_org(org)
    if mine is None or not mine.allows(role):
        raise forbidden(role)
    key, prefix, digest = new_api_key()
    event = _valid(
        ApiKeyCreated,
        actor=who.actor,
        key_id=uuid.uuid4().hex[:12],
        name=name,
        org=org,
        project=project,
        role=role,
        prefix=prefix,
        key_hash=digest,
    )
    await p.access.publish(event)
    return {**key_view(p.access.state.keys[event.key_id], None), "key": key}


async def revoke_key(p: Platform, who: Principal, key_id: str) -> None:
    key = p.access.state.keys.get(key_id)
    if key is None or who.role_in_org(key.org) is None:
        raise ApiError(404, "not_found", f"no API key {key_id!r}", "key_id")
    need_org_role(p, who, key.org, AccessRole.ADMIN)
    await p.access.publish(ApiKeyRevoked(actor=who.actor, key_id=key_id))


def key_view(key: Any, last_used: Any) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "org": key.org,
        "project": key.project,
        "role": key.role.value,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "created_by": key.created_by,
        "last_used_at": last_used.isoformat() if last_used else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


async def org_view(p: Platform, who: Principal, org: str) -> dict[str, Any]:
    """Members, projects, API keys and the newest audit lines of an organisation (Admins)."""
    need_org_role(p, who, org, AccessRole.ADMIN)
    state = p.access.state
    used = await service.query(p, sessions.keys_last_used)
    members = state.members.get(org, {})

    def concerns(line: Any) -> bool:
        """An organisation's own lines, and those about one of its members (logins,
        passwords); a line about nobody's user belongs to the default organisation,
        and so does an organisation's deletion (its own page is gone)."""
        if line.action == "org_deleted" and org == DEFAULT_ORG:
            return True
        if line.org:
            return bool(line.org == org)
        users = {line.actor.removeprefix("user:"), line.target} & set(state.users)
        return bool(users & set(members)) or (not users and org == DEFAULT_ORG)

    audit = [a for a in reversed(state.audit) if concerns(a)]
    return {
        "org": org,
        "members": [{"username": u, "role": r.value} for u, r in sorted(members.items())],
        "projects": state.projects_of(org),
        "keys": [key_view(k, used.get(k.key_id)) for k in state.keys.values() if k.org == org],
        "audit": [
            {
                "at": a.at.isoformat(),
                "actor": a.actor,
                "action": a.action,
                "project": a.project,
                "target": a.target,
            }
            for a in audit[:500]
        ],
    }
