"""Who is asking and what they may do: the `Principal` and the `require` dependency.

Roles (callmeter_events.AccessRole, re-exported here as `Role`) rank
VIEWER < TESTER < EDITOR < ADMIN < OWNER; each allows what the ones below allow.

A user has one role per organisation it is a member of, and that role in every
project of the organisation. An API key created in the UI has one role in one
project. A CALLMETER_API_KEYS key is an Owner: of every organisation (`KEY`) or of
its project (`PROJECT:KEY`). Nobody else is served anything but the public pages
(services/api/auth.py), not even by an installation without users yet.

Everything another organisation holds is answered as an unknown id would be (404);
what the caller may see but not do is 403.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from callmeter_events import AccessRole

from . import service
from .deps import Platform, PlatformDep
from .errors import ApiError
from .principal import NOBODY, Principal, ProjectFilter

__all__ = ["NOBODY", "Principal", "PrincipalDep", "ProjectFilter", "Role", "require"]

Role = AccessRole


def get_principal(request: Request) -> Principal:
    """Set by the authentication middleware (services/api/auth.py)."""
    return getattr(request.state, "principal", NOBODY)  # type: ignore[no-any-return]


PrincipalDep = Annotated[Principal, Depends(get_principal)]

# What the caller may see. Unknown ids and other organisations' ids get the same answer.
_PROJECT_OF = {
    "run_id": ("run", "SELECT doc->'definition'->>'project' FROM runs WHERE run_id = %s"),
    "test_id": (
        "test",
        "SELECT doc->'definition'->>'project' FROM tests WHERE test_id = %s AND NOT deleted",
    ),
}


async def project_of(p: Platform, name: str, value: str) -> str | None:
    """The project of run or test `value` (`name` is "run_id" or "test_id"), None if unknown."""
    sql = _PROJECT_OF[name][1]

    def read(conn: Any) -> str | None:
        row = conn.execute(sql, (value,)).fetchone()
        return row[0] if row else None

    return await service.query(p, read)


async def authorize(
    p: Platform, principal: Principal, role: AccessRole, name: str, value: str, field: str = ""
) -> str | None:
    """404 (as for an unknown id) unless the caller sees run or test `value`; 403 unless
    it has `role` in its project. Returns the project (None for an Owner of
    everything, which is not looked up: the route answers an unknown id itself)."""
    if principal.everything is not None and principal.everything.allows(role):
        return None
    kind = _PROJECT_OF[name][0]
    project = await project_of(p, name, value)
    if project is None or not principal.sees(project):
        raise ApiError(404, "not_found", f"no {kind} {value!r}", field or name)
    if not principal.may(role, project):
        raise forbidden(role)
    return project


def forbidden(role: AccessRole, what: str = "") -> ApiError:
    where = f" in project {what!r}" if what else ""
    return ApiError(403, "forbidden", f"this needs the {role.value} role{where}")


def require(role: AccessRole) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A route dependency: the caller needs `role` in the project of the run or test
    the path names (`run_id`, `test_id`), else 404 (not visible at all: as for an
    unknown id) or 403 (visible, role too low). A route naming neither needs `role`
    in at least one project; it then checks the project it acts on itself
    (e.g. `own_definition`). Use as `dependencies=[Depends(require(Role.EDITOR))]`
    or as a parameter `principal: Annotated[Principal, Depends(require(Role.TESTER))]`.
    """

    async def check(request: Request, p: PlatformDep, principal: PrincipalDep) -> Principal:
        named = [n for n in ("run_id", "test_id") if n in request.path_params]
        for name in named:
            await authorize(p, principal, role, name, request.path_params[name])
        if not named and not principal.anywhere(role):
            raise forbidden(role)
        return principal

    check.__name__ = f"require_{role.value}"
    return check
