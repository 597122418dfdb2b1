"""Platform events (stream CALLMETER_EVENTS): what happened to the platform itself."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from .base import Event

Component = Literal["nats", "postgres"]
COMPONENT_NAMES: dict[str, str] = {"nats": "NATS", "postgres": "PostgreSQL"}


class PlatformOutage(Event):
    """A service could not reach NATS or PostgreSQL from `started_at` to `ended_at`.

    Published by the service that saw it, once it can publish again. Runs whose time
    overlaps it name it in their reason, and their deadlines count it.
    """

    type: Literal["PlatformOutage"] = "PlatformOutage"
    component: Component
    reporter: str  # the service that saw it
    started_at: datetime
    ended_at: datetime

    def subject(self) -> str:
        # Under callmeter.run.>, so every fold of the runs' events sees it (no run id is
        # "platform": run ids are hex).
        return f"callmeter.run.platform.outage.{self.component}"

    def dedup_key(self) -> str | None:
        return f"PlatformOutage:{self.component}:{self.reporter}:{self.started_at.isoformat()}"
