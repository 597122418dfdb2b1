"""Probes, pure: what an execution is judged, when a probe's health changes, when a
probe is due, and which targets are small enough to probe. No I/O.

An execution is judged on the figures its run's evaluation recorded (RunEvaluated:
callmeter_storage.stats and the folded endpoints, the same figures a run's
thresholds are judged on), with the threshold language of callmeter_events.thresholds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from callmeter_events import Health, TestDefinition
from callmeter_events.thresholds import evaluate, parse
from callmeter_vocabulary import Outcome

# Conditions that must hold; the defaults depend on what the target does.
CALL_DEGRADED = ("mos_avg >= 3.5", "post_dial_delay_p95_ms <= 3000")
CALL_UNHEALTHY = ("call_success_rate >= 100",)
REGISTRATION_UNHEALTHY = ("registration_success_rate >= 100",)
MAX_ENDPOINTS = 4  # a probe is a small check, not a load test
MAX_DURATION_S = 120.0
INTERVAL_MARGIN_S = 5.0  # an execution must fit its interval with this to spare
# Endpoints that ended this way failed for the platform's sake, not the target's: their
# worker or endpoint host was lost, or the worker's own OS refused (ports, TLS files).
PLATFORM_OUTCOMES = (Outcome.WORKER_LOST, Outcome.OSERROR)


def places_calls(definition: TestDefinition) -> bool:
    return any(g.calls for g in definition.groups)


def default_conditions(definition: TestDefinition) -> tuple[list[str], list[str]]:
    """(degraded, unhealthy) conditions for a target: a call probe judges the call and
    its quality; a registration probe judges the registration."""
    if places_calls(definition):
        return list(CALL_DEGRADED), list(CALL_UNHEALTHY)
    return [], list(REGISTRATION_UNHEALTHY)


def check_conditions(conditions: Sequence[str], field: str) -> None:
    """ValueError naming `field.<i>` for a condition the threshold language refuses."""
    for i, expression in enumerate(conditions):
        try:
            parse(expression)
        except ValueError as exc:
            raise ValueError(f"{field}.{i}: {exc}") from None


def check_target(definition: TestDefinition, interval_s: float, field: str) -> None:
    """ValueError naming the field when `definition` is too big to probe with."""
    if definition.capacity is not None:
        raise ValueError(f"{field}.capacity: a probe cannot run a capacity search")
    if definition.total_endpoints() > MAX_ENDPOINTS:
        raise ValueError(
            f"{field}.groups: a probe has at most {MAX_ENDPOINTS} endpoints"
            f" (this target has {definition.total_endpoints()})"
        )
    for i, g in enumerate(definition.groups):
        if g.pattern.kind != "single":
            raise ValueError(f"{field}.groups.{i}.pattern: a probe makes one call per caller")
    length = definition.duration_s + definition.buildup_s
    if length > MAX_DURATION_S:
        raise ValueError(f"{field}.duration_s: a probe lasts at most {MAX_DURATION_S:g} s")
    if interval_s < length + INTERVAL_MARGIN_S:
        raise ValueError(
            f"interval_s: must be at least the target's {length:g} s plus {INTERVAL_MARGIN_S:g} s"
        )


@dataclass(frozen=True)
class Judgement:
    """One execution: its health (None: not judged, the platform could not measure
    the target), why, and the figures its history shows."""

    health: Health | None
    reason: str = ""
    mos: float | None = None
    post_dial_delay_ms: float | None = None
    success_pct: float | None = None


def judge(
    metrics: Mapping[str, float | None] | None,
    degraded: Sequence[str],
    unhealthy: Sequence[str],
    calls: bool,
    not_run: str = "",
) -> Judgement:
    """Unhealthy when an `unhealthy` condition fails, else Degraded when a `degraded`
    one fails, else Healthy. `not_run` (the run was refused, or the load generator
    was overloaded) means nothing was measured of the target: not judged."""
    if metrics is None or not_run:
        return Judgement(None, not_run or "not measured")
    figures = {
        "mos": metrics.get("mos_avg"),
        "post_dial_delay_ms": metrics.get("post_dial_delay_p95_ms"),
        "success_pct": metrics.get("call_success_rate" if calls else "registration_success_rate"),
    }
    for health, conditions in ((Health.UNHEALTHY, unhealthy), (Health.DEGRADED, degraded)):
        failed = [r for r in evaluate([parse(c) for c in conditions], metrics) if not r.passed]
        if failed:
            why = "; ".join(f"{r.expression} failed ({_shown(r.actual)})" for r in failed)
            return Judgement(health, why, **figures)
    return Judgement(Health.HEALTHY, "", **figures)


def platform_fault(outcomes: Mapping[str, int], outages: Sequence[str]) -> str:
    """Why an execution says nothing about its target because the platform failed
    under it ("" when it did not): endpoints lost with their worker or host or refused
    by the worker's OS, or NATS or PostgreSQL out during the run (`outages`, described).
    A probe must not page the target's owners for the load generator's failure."""
    lost = [f"{outcomes[o]} {o}" for o in PLATFORM_OUTCOMES if outcomes.get(o)]
    if lost:
        return f"not judged: the platform failed ({', '.join(lost)})"
    if outages:
        return f"not judged: platform outage during the run ({'; '.join(outages)})"
    return ""


def _shown(value: float | None) -> str:
    return "no value" if value is None else f"{value:g}"


def settle(current: Health | None, recent: Sequence[Health | None], confirm: int) -> Health | None:
    """The probe's new health after its latest executions (`recent`, oldest first;
    None: not judged), or None when it does not change. The first judged execution
    sets it; after that a change needs `confirm` judged executions in a row that agree
    (one bad call does not page anybody when confirm > 1)."""
    judged = [h for h in recent if h is not None]
    if not judged:
        return None
    if current is None:
        return judged[-1]
    last = judged[-confirm:]
    if len(last) == confirm and len(set(last)) == 1 and last[0] != current:
        return last[0]
    return None


def decide(
    stored: Health | None, recent: Sequence[Health | None], judged: Health | None, confirm: int
) -> tuple[Health | None, Health | None]:
    """An execution's effect on its probe: (its new health when it changes, else None;
    the probe's health after the execution, which the execution's row keeps).

    `stored` and `recent` are what the executions before this one stored (the probe's
    health after them, and their last `confirm` - 1 judged healths), never a process's
    own fold of past events: every API process judging this execution decides the
    same change, so the one event id it derives is one fact, told once."""
    new = settle(stored, [*recent, judged], confirm)
    return new, new or stored


def slot_of(now_s: float, interval_s: float) -> int:
    """The interval a moment falls in (seconds since the epoch // interval)."""
    return math.floor(now_s / interval_s)


def due(now_s: float, interval_s: float, last_slot: int | None, busy: bool) -> int | None:
    """The slot to execute now, or None: not before the next interval starts, and never
    while the previous execution is still running (a slow target is not piled on)."""
    if busy:
        return None
    slot = slot_of(now_s, interval_s)
    if last_slot is not None and slot <= last_slot:
        return None
    return slot


def execution_run_id(probe_id: str, slot: int) -> str:
    """The run id of a probe's execution in a slot: the same in every API process, so
    two that decide the same execution publish one RunCreated (JetStream drops the
    second by its Nats-Msg-Id)."""
    return "p" + hashlib.sha256(f"{probe_id}:{slot}".encode()).hexdigest()[:11]
