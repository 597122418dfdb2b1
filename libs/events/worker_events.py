"""Worker presence events (stream CALLMETER_WORKERS)."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import Event


class _WorkerEvent(Event):
    stream: ClassVar[str] = "CALLMETER_WORKERS"
    worker_id: str
    token: ClassVar[str] = ""

    def subject(self) -> str:
        return f"callmeter.worker.{self.worker_id}.{self.token}"


class WorkerOnline(_WorkerEvent):
    type: Literal["WorkerOnline"] = "WorkerOnline"
    token: ClassVar[str] = "online"
    region: str = "default"
    capacity: int
    hostname: str = ""
    # The X25519 key this worker process has credentials sealed to (credentials.py);
    # the API seals a password only to the key the assigned worker announced.
    public_key: str = ""


class WorkerHeartbeat(_WorkerEvent):
    type: Literal["WorkerHeartbeat"] = "WorkerHeartbeat"
    token: ClassVar[str] = "heartbeat"
    region: str = "default"
    capacity: int
    free_slots: int
    load: float
    hosts: int = 0
    public_key: str = ""  # as in WorkerOnline (a restarted API learns it from the beats)
    seq: int = 0


class WorkerOffline(_WorkerEvent):
    type: Literal["WorkerOffline"] = "WorkerOffline"
    token: ClassVar[str] = "offline"


class WorkerLost(_WorkerEvent):
    type: Literal["WorkerLost"] = "WorkerLost"
    token: ClassVar[str] = "lost"
    reason: str
    last_seq: int = 0

    def dedup_key(self) -> str | None:
        return f"WorkerLost:{self.worker_id}:{self.last_seq}"


# The catalogue's worker events (codec.EVENT_TYPES).
WORKER_EVENTS: tuple[type[Event], ...] = (WorkerOnline, WorkerHeartbeat, WorkerOffline, WorkerLost)
