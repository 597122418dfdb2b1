"""The access fold: users, organisations, projects, members, API keys and the audit
trail, from CALLMETER_ACCESS. Pure; every API process folds the whole stream in
memory (it is small: people and keys, not calls).

Organisations contain projects. A project name belongs to one organisation, from
its ProjectCreated on; a name no organisation has created (every project of an
installation older than organisations, and CALLMETER_API_KEYS' projects) belongs
to the installation's default organisation, DEFAULT_ORG.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime

from callmeter_events import (
    AccessRole,
    ApiKeyCreated,
    ApiKeyRevoked,
    AuditRecorded,
    Event,
    MembershipSet,
    OrganisationCreated,
    OrganisationDeleted,
    PasswordChanged,
    ProjectCreated,
    UserCreated,
)

DEFAULT_ORG = "default"
AUDIT_KEPT = 10_000  # newest audit lines kept in memory; the stream keeps them all


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    # Sessions started before this ended (a password change ends every session).
    sessions_valid_from: datetime


@dataclass(frozen=True)
class ApiKeyState:
    key_id: str
    name: str
    org: str
    project: str
    role: AccessRole
    prefix: str
    key_hash: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AuditLine:
    seq: int
    at: datetime
    actor: str
    action: str
    org: str
    project: str
    target: str


@dataclass
class AccessState:
    position: int = 0
    orgs: set[str] = field(default_factory=lambda: {DEFAULT_ORG})
    deleted_orgs: set[str] = field(default_factory=set)  # their names are never used again
    project_org: dict[str, str] = field(default_factory=dict)  # created projects only
    users: dict[str, User] = field(default_factory=dict)
    members: dict[str, dict[str, AccessRole]] = field(default_factory=dict)  # org -> user -> role
    keys: dict[str, ApiKeyState] = field(default_factory=dict)  # by key_id
    audit: deque[AuditLine] = field(default_factory=lambda: deque(maxlen=AUDIT_KEPT))

    def org_of(self, project: str) -> str:
        return self.project_org.get(project, DEFAULT_ORG)

    def projects_of(self, org: str) -> list[str]:
        """The created projects of `org` (the default one also owns every other name)."""
        return sorted(p for p, o in self.project_org.items() if o == org)

    def role_of(self, username: str, org: str) -> AccessRole | None:
        return self.members.get(org, {}).get(username)

    def orgs_of(self, username: str) -> dict[str, AccessRole]:
        return {org: m[username] for org, m in self.members.items() if username in m}

    def key_by_hash(self, key_hash: str) -> ApiKeyState | None:
        for key in self.keys.values():
            if key.key_hash == key_hash and key.revoked_at is None:
                return key
        return None

    def apply(self, seq: int, event: Event) -> None:
        self.position = max(self.position, seq)
        actor = getattr(event, "actor", "")
        match event:
            case OrganisationCreated(org=org):
                self.orgs.add(org)
                self._audit(seq, event, "org_created", org, "", org)
            case OrganisationDeleted(org=org) if org != DEFAULT_ORG:
                self.orgs.discard(org)
                self.deleted_orgs.add(org)
                self.members.pop(org, None)
                for kept in list(self.keys.values()):
                    if kept.org == org and kept.revoked_at is None:
                        self.keys[kept.key_id] = _revoked(kept, event.occurred_at)
                # project_org keeps its projects: no other organisation inherits them
                self._audit(seq, event, "org_deleted", org, "", org)
            case ProjectCreated(org=org, project=project):
                self.project_org.setdefault(project, org)
                self._audit(seq, event, "project_created", org, project, project)
            case UserCreated(username=name, password_hash=h):
                if name not in self.users:
                    self.users[name] = User(name, h, event.occurred_at)
                self._audit(seq, event, "user_created", "", "", name)
            case PasswordChanged(username=name, password_hash=h):
                if name in self.users:
                    self.users[name] = User(name, h, event.occurred_at)
                self._audit(seq, event, "password_changed", "", "", name)
            case MembershipSet(org=org, username=name, role=role):
                members = self.members.setdefault(org, {})
                if role is None:
                    members.pop(name, None)
                else:
                    members[name] = role
                what = f"member_{role.value}" if role is not None else "member_removed"
                self._audit(seq, event, what, org, "", name)
            case ApiKeyCreated():
                self.keys.setdefault(
                    event.key_id,
                    ApiKeyState(
                        event.key_id,
                        event.name,
                        event.org,
                        event.project,
                        event.role,
                        event.prefix,
                        event.key_hash,
                        event.occurred_at,
                        actor,
                    ),
                )
                self._audit(seq, event, "key_created", event.org, event.project, event.prefix)
            case ApiKeyRevoked(key_id=key_id):
                key = self.keys.get(key_id)
                if key is not None and key.revoked_at is None:
                    self.keys[key_id] = _revoked(key, event.occurred_at)
                    self._audit(seq, event, "key_revoked", key.org, key.project, key.prefix)
            case AuditRecorded():
                self._audit(seq, event, event.action, event.org, event.project, event.target)

    def _audit(
        self, seq: int, event: Event, action: str, org: str, project: str, target: str
    ) -> None:
        actor = getattr(event, "actor", "")
        self.audit.append(AuditLine(seq, event.occurred_at, actor, action, org, project, target))


def _revoked(key: ApiKeyState, at: datetime) -> ApiKeyState:
    return replace(key, revoked_at=at)
