"""A probe's current health, folded from ProbeHealthChanged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from callmeter_events import Event, Health, ProbeHealthChanged


@dataclass(frozen=True)
class ProbeHealthState:
    probe_id: str
    health: Health
    since: datetime  # when it changed to `health`
    run_id: str  # the execution that decided it
    changes: int = 1


def apply_probe(event: Event, probe: ProbeHealthState | None) -> ProbeHealthState | None:
    """Fold one event into a probe's health (None: never judged yet). A replayed
    or re-derived change for the same execution changes nothing."""
    if not isinstance(event, ProbeHealthChanged):
        return probe
    if probe is not None and probe.run_id == event.run_id:
        return probe
    changes = probe.changes + 1 if probe is not None else 1
    return ProbeHealthState(event.probe_id, event.health, event.occurred_at, event.run_id, changes)
