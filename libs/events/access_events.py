"""Access events (stream CALLMETER_ACCESS): users, organisations, projects, members,
API keys and the audit trail.

Kept apart from CALLMETER_EVENTS so that nothing which reads tests and runs (the
events API, replay, the read models) ever sees a password hash. No event holds a
password or an API key in clear: users carry an argon2 hash, keys a SHA-256 of
the key and its visible prefix.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from .base import Event

NAME = r"^[A-Za-z0-9 _.-]+$"  # TestDefinition.project's rule, for organisations too
USERNAME = r"^[A-Za-z0-9_.@-]+$"


class AccessRole(StrEnum):
    """A member's role in an organisation, or an API key's in its project; each
    includes what the ones before it may do."""

    VIEWER = "viewer"  # read
    TESTER = "tester"  # run and stop
    EDITOR = "editor"  # tests (and, later, registrars and accounts)
    ADMIN = "admin"  # members, API keys, webhooks, the audit trail
    OWNER = "owner"  # everything, including deleting the organisation

    @property
    def rank(self) -> int:
        return list(AccessRole).index(self)

    def allows(self, needed: AccessRole) -> bool:
        return self.rank >= needed.rank


class _Access(Event):
    stream: ClassVar[str] = "CALLMETER_ACCESS"
    actor: str = ""  # who did it: "user:<username>", "key:<prefix>", "env-key", "cli"


class OrganisationCreated(_Access):
    type: Literal["OrganisationCreated"] = "OrganisationCreated"
    org: str = Field(min_length=1, max_length=64, pattern=NAME)

    def subject(self) -> str:
        return f"callmeter.access.org.{_token(self.org)}"


class OrganisationDeleted(_Access):
    """The organisation is gone: its members and API keys lose every access to it. Its
    project names stay its own, so no other organisation ever inherits what they held
    (its tests, runs, registrars, pools, audio and secrets were deleted before)."""

    type: Literal["OrganisationDeleted"] = "OrganisationDeleted"
    org: str = Field(min_length=1, max_length=64, pattern=NAME)

    def subject(self) -> str:
        return f"callmeter.access.org_deleted.{_token(self.org)}"


class ProjectCreated(_Access):
    """A project name belongs to one organisation from now on."""

    type: Literal["ProjectCreated"] = "ProjectCreated"
    org: str
    project: str = Field(min_length=1, max_length=64, pattern=NAME)

    def subject(self) -> str:
        return f"callmeter.access.project.{_token(self.project)}"


class UserCreated(_Access):
    type: Literal["UserCreated"] = "UserCreated"
    username: str = Field(min_length=1, max_length=64, pattern=USERNAME)
    password_hash: str  # argon2id, never the password

    def subject(self) -> str:
        return f"callmeter.access.user.{_token(self.username)}"


class PasswordChanged(_Access):
    type: Literal["PasswordChanged"] = "PasswordChanged"
    username: str
    password_hash: str  # argon2id; every session of the user ends

    def subject(self) -> str:
        return f"callmeter.access.user.{_token(self.username)}"


class MembershipSet(_Access):
    """`username` is a member of `org` with `role`; None: no longer a member."""

    type: Literal["MembershipSet"] = "MembershipSet"
    org: str
    username: str
    role: AccessRole | None

    def subject(self) -> str:
        return f"callmeter.access.member.{_token(self.org)}"


class ApiKeyCreated(_Access):
    type: Literal["ApiKeyCreated"] = "ApiKeyCreated"
    key_id: str
    name: str = Field(min_length=1, max_length=100)
    org: str
    project: str = Field(min_length=1, max_length=64, pattern=NAME)
    role: AccessRole
    prefix: str  # the visible start of the key, e.g. "cmk_3f9a2c1d"
    key_hash: str  # sha256 hex of the whole key (it is random: no salt or argon2 needed)

    def subject(self) -> str:
        return f"callmeter.access.key.{self.key_id}"


class ApiKeyRevoked(_Access):
    type: Literal["ApiKeyRevoked"] = "ApiKeyRevoked"
    key_id: str

    def subject(self) -> str:
        return f"callmeter.access.key.{self.key_id}"


AuditAction = Literal[
    "login",
    "login_failed",
    "logout",
    "test_created",
    "test_edited",
    "test_deleted",
    "run_started",
    "run_stopped",
    "run_deleted",
    "registrar_created",
    "registrar_edited",
    "registrar_deleted",
    "pool_created",
    "pool_edited",
    "pool_deleted",
    "probe_created",
    "probe_edited",
    "probe_deleted",
    "project_webhooks_changed",
    "status_page_published",
    "status_page_withdrawn",
]


class AuditRecorded(_Access):
    """Something a person or key did that is not itself an access event."""

    type: Literal["AuditRecorded"] = "AuditRecorded"
    action: AuditAction
    org: str = ""  # "" when not about one organisation (a failed login)
    project: str = ""
    target: str = ""  # the test or run id, or the username tried

    def subject(self) -> str:
        return f"callmeter.access.audit.{self.action}"


def _token(name: str) -> str:
    """A subject token for a name (spaces and dots are not allowed in one)."""
    return name.encode().hex()


ACCESS_EVENTS: tuple[type[Event], ...] = (
    OrganisationCreated,
    OrganisationDeleted,
    ProjectCreated,
    UserCreated,
    PasswordChanged,
    MembershipSet,
    ApiKeyCreated,
    ApiKeyRevoked,
    AuditRecorded,
)
