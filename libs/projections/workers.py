"""Worker registry folded from CALLMETER_WORKERS."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from callmeter_events import Event, WorkerHeartbeat, WorkerLost, WorkerOffline, WorkerOnline


@dataclass(frozen=True)
class WorkerState:
    worker_id: str
    region: str
    capacity: int
    free_slots: int
    load: float
    status: str  # ONLINE, OFFLINE, LOST
    last_seen: datetime
    seq: int = 0
    hosts: int = 0
    public_key: str = ""  # what credentials are sealed to (callmeter_events.credentials)


def apply_worker(event: Event, worker: WorkerState | None) -> WorkerState | None:
    if isinstance(event, WorkerOnline):
        return WorkerState(
            event.worker_id,
            event.region,
            event.capacity,
            event.capacity,
            0.0,
            "ONLINE",
            event.occurred_at,
            public_key=event.public_key,
        )
    if isinstance(event, WorkerHeartbeat):
        return WorkerState(
            event.worker_id,
            event.region,
            event.capacity,
            event.free_slots,
            event.load,
            "ONLINE",
            event.occurred_at,
            event.seq,
            event.hosts,
            event.public_key,
        )
    if worker is None:
        return None
    if isinstance(event, WorkerOffline):
        return replace(worker, status="OFFLINE", free_slots=0)
    if isinstance(event, WorkerLost) and event.last_seq >= worker.seq:
        return replace(worker, status="LOST", free_slots=0)
    return worker
