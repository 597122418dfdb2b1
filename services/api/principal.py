"""The caller of a request and its roles, as a value: what `authz.require` checks
and what lists filter by. Pure."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field

from callmeter_events import AccessRole
from callmeter_projections.access import DEFAULT_ORG


@dataclass(frozen=True)
class ProjectFilter:
    """Which projects' rows a list may show: those in `only` (when not None), minus
    those in `hidden`."""

    only: tuple[str, ...] | None = None
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True)
class Principal:
    actor: str  # what the audit trail records: user:NAME, key:PREFIX, env-key, anonymous
    everything: AccessRole | None = None  # a role in every project
    org_roles: Mapping[str, AccessRole] = field(default_factory=dict)
    project_roles: Mapping[str, AccessRole] = field(default_factory=dict)
    # project name -> organisation, for created projects (others are DEFAULT_ORG's)
    project_org: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    csrf: str | None = None  # the session's CSRF token; None: no session (a key)

    def org_of(self, project: str) -> str:
        return self.project_org.get(project, DEFAULT_ORG)

    def role_in(self, project: str | None) -> AccessRole | None:
        """The caller's role in `project`, None: it may not even see it."""
        if project is None:
            return self.everything
        roles = [
            r
            for r in (
                self.everything,
                self.org_roles.get(self.org_of(project)),
                self.project_roles.get(project),
            )
            if r is not None
        ]
        return max(roles, key=lambda r: r.rank) if roles else None

    def role_in_org(self, org: str) -> AccessRole | None:
        """Organisation-wide role (members, keys, audit); a project key has none."""
        if self.everything is not None and not self.project_roles:
            return self.everything
        return self.org_roles.get(org)

    def sees(self, project: str | None) -> bool:
        return self.role_in(project) is not None

    def may(self, role: AccessRole, project: str | None) -> bool:
        mine = self.role_in(project)
        return mine is not None and mine.allows(role)

    def anywhere(self, role: AccessRole) -> bool:
        """At least `role` in some project (a list or a create form is worth showing)."""
        roles = [self.everything, *self.org_roles.values(), *self.project_roles.values()]
        return any(r is not None and r.allows(role) for r in roles)

    @property
    def project(self) -> str | None:
        """The one project of a project-scoped key (None: not limited to one)."""
        if self.everything is None and not self.org_roles and len(self.project_roles) == 1:
            return next(iter(self.project_roles))
        return None

    def project_filter(self) -> ProjectFilter | None:
        """For SQL over tests and runs: None when every project is visible."""
        if self.everything is not None:
            return None
        visible = {p for p, o in self.project_org.items() if o in self.org_roles}
        visible |= set(self.project_roles)
        if DEFAULT_ORG in self.org_roles:  # the default organisation owns every other name
            hidden = {p for p in self.project_org if p not in visible}
            return ProjectFilter(None, tuple(sorted(hidden)))
        return ProjectFilter(tuple(sorted(visible)))


# Who a public page (login, setup, probes) is served to without credentials: no role
# anywhere, so nothing of any project is visible to it.
NOBODY = Principal("anonymous")

# The request's caller, for templates (pages.render) that have no request at hand;
# set by the authentication middleware (services/api/auth.py).
CURRENT: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=NOBODY)
