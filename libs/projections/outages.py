"""Platform outages (NATS or PostgreSQL unreachable) as merged intervals, and how much of
a span of time they cover: deadlines count that time, reasons name the outages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from callmeter_events import COMPONENT_NAMES, PlatformOutage


@dataclass(frozen=True)
class Outage:
    component: str
    started_at: datetime
    ended_at: datetime
    reporters: tuple[str, ...] = ()

    def describe(self) -> str:
        name = COMPONENT_NAMES.get(self.component, self.component)
        return f"{name} unreachable from {self.started_at:%H:%M:%S} to {self.ended_at:%H:%M:%S}"


def of_event(event: PlatformOutage) -> Outage:
    return Outage(event.component, event.started_at, event.ended_at, (event.reporter,))


def merge(outages: Iterable[Outage], new: Outage) -> tuple[Outage, ...]:
    """Add an outage; overlapping ones of the same component become one (services each
    report what they saw of the same outage)."""
    keep, joined = [], new
    for o in outages:
        if o.component == joined.component and (
            o.started_at <= joined.ended_at and joined.started_at <= o.ended_at
        ):
            joined = Outage(
                o.component,
                min(o.started_at, joined.started_at),
                max(o.ended_at, joined.ended_at),
                tuple(sorted(set(o.reporters) | set(joined.reporters))),
            )
        else:
            keep.append(o)
    return tuple(sorted([*keep, joined], key=lambda o: (o.started_at, o.component)))


def covered_s(outages: Iterable[Outage], start: datetime, end: datetime) -> float:
    """Seconds of [start, end] during which any outage lasted (overlaps counted once)."""
    spans = sorted(
        (max(o.started_at, start), min(o.ended_at, end))
        for o in outages
        if o.ended_at > start and o.started_at < end
    )
    total, reach = 0.0, start
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            total += (hi - lo).total_seconds()
            reach = hi
    return total
