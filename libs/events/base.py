"""The event base class: identity, time, version, subject and dedup rule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Namespace for deterministic event ids derived from an event's dedup key.
_EVENT_NS = uuid.UUID("6f1d1c0e-5a8e-4f3b-9a57-0c2a3b1e7d42")


def utcnow() -> datetime:
    """Timezone-aware current time; events never carry naive datetimes."""
    return datetime.now(UTC)


class Event(BaseModel):
    """An immutable fact. Subclasses set `type`, `stream` and `subject()`.

    `dedup_key()` names the fact, not the attempt: two publishes of "run R
    completed" share it, so JetStream drops the second one (`Nats-Msg-Id`),
    whichever process or retry produced it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: ClassVar[str] = "CALLMETER_EVENTS"
    content_type: ClassVar[str] = "application/json"  # how codec.encode writes it
    schema_version: int = 1
    event_id: str = ""
    occurred_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _default_event_id(self) -> Event:
        if not self.event_id:
            key = self.dedup_key()
            value = str(uuid.uuid5(_EVENT_NS, key)) if key else str(uuid.uuid4())
            object.__setattr__(self, "event_id", value)
        return self

    def subject(self) -> str:  # pragma: no cover - every concrete event overrides
        raise NotImplementedError

    def dedup_key(self) -> str | None:
        """A stable name of this fact, or None when every instance is new."""
        return None

    def msg_id(self) -> str:
        """The `Nats-Msg-Id` header: deterministic for the same fact."""
        return f"{type(self).__name__}:{self.event_id}"
