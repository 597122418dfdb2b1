"""A finished run as it was at a moment: fold its events up to that time. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from callmeter_events import Event, RunCreated
from callmeter_projections import RunsProjection
from callmeter_storage.readmodels import doc


def run_start(events: list[Event]) -> datetime | None:
    return next((e.occurred_at for e in events if isinstance(e, RunCreated)), None)


def length_s(events: list[Event]) -> float:
    """Seconds from the run's creation to its last event."""
    start = run_start(events)
    return 0.0 if start is None or not events else (events[-1].occurred_at - start).total_seconds()


def state_at(
    events: list[Event], run_id: str, at_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(run doc, endpoint docs) as the read models showed them `at_s` seconds after creation."""
    start = run_start(events)
    if start is None:
        raise ValueError(f"run {run_id} has no RunCreated event")
    until = start + timedelta(seconds=at_s)
    projection = RunsProjection()
    for seq, event in enumerate(events, 1):
        if event.occurred_at > until:
            break
        projection.apply(seq, event)
    run = doc(projection.runs[run_id])
    endpoints = [doc(e) for e in projection.endpoints[run_id].values()]
    return run, endpoints
