"""Probes (continuous monitoring): the health vocabulary and the one probe event.

A probe's execution is a small run; its health changes are facts about that run,
so they live under the run's subjects (`callmeter.run.<run_id>.probe.<probe>.health`):
the runs fold sees them, a deleted run takes its events along, and access checks
find the project through the run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from .base import Event


class Health(StrEnum):
    """What one probe execution, and a probe, is judged to be (best first)."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"

    @property
    def rank(self) -> int:
        return list(Health).index(self)


class ProbeHealthChanged(Event):
    """A probe's health changed: `previous` (None: its first judged execution) to
    `health`, decided on the execution run `run_id` (and the `confirm` - 1 before it).
    `reason` names the conditions that failed, for the people an alert wakes up."""

    type: Literal["ProbeHealthChanged"] = "ProbeHealthChanged"
    run_id: str
    probe_id: str
    probe_name: str
    project: str
    previous: Health | None
    health: Health
    reason: str = ""
    mos: float | None = None
    post_dial_delay_ms: float | None = None
    success_pct: float | None = None

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.probe.{self.probe_id}.health"

    def dedup_key(self) -> str | None:
        # One decision per execution: every API replica derives the same one.
        return f"ProbeHealthChanged:{self.probe_id}:{self.run_id}"
