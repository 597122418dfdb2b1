"""Capacity search: the steps of a run, each step's verdict, and the answer. Pure.

A capacity run's callers join in steps (TestDefinition.capacity; the dispatcher
delays caller n by its step's start). Step k starts `k * step_s` after the run's
first callers went out and is judged on its own seconds, from `settle_s` after
its start to its end, against the stop conditions: quality values from the
window's samples (callmeter_storage.stats.window_threshold_values), call,
registration and timing values from the endpoints that had joined by then
(`endpoint_values`). A search in calls per second (capacity.cps_per_step) steps each
calling group's rate instead, from the instant its rate starts (pattern_lead_s() after
the callers go out); an endpoint there makes many calls, so its call success and
timing come from the records of the calls attempted in the step (`record_values`). A step the load generator was overloaded in fails whatever
its figures: they measured the generator. The answer is the last step that passed
before the first one that failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callmeter_events import (
    GOOD_OUTCOMES,
    CapacityStepJudged,
    RatePattern,
    TestDefinition,
)
from callmeter_events.thresholds import evaluate, parse
from callmeter_projections import EndpointState


@dataclass(frozen=True)
class StepWindow:
    step: int
    calls: int  # callers that have joined by this step: concurrent calls asked for
    cps: float | None  # a search in calls per second: the rate asked for
    start: datetime  # the step's callers go out
    judged_from: datetime  # start + settle_s
    end: datetime


def calls_at(definition: TestDefinition, step: int) -> int:
    """Callers that have joined by `step` (0-based), over every calling group."""
    assert definition.capacity is not None
    per_step = definition.capacity.endpoints_per_step
    joined = (step + 1) * per_step if per_step is not None else 10**9  # calls/s: all
    return sum(min(g.endpoints, joined) for g in definition.groups if g.calls or g.target_uri)


def cps_at(definition: TestDefinition, step: int) -> float | None:
    """Calls per second asked for in `step`, over every calling group (None: a search
    in endpoints)."""
    capacity = definition.capacity
    assert capacity is not None
    if capacity.cps_per_step is None:
        return None
    rates = [g.pattern.cps for g in definition.groups if isinstance(g.pattern, RatePattern)]
    return sum(capacity.cps_at(step, most) for most in rates if most is not None)


def step_window(definition: TestDefinition, anchor: datetime, step: int) -> StepWindow:
    """Step `step` of a search whose callers went out at `anchor`."""
    capacity = definition.capacity
    assert capacity is not None
    lead = definition.pattern_lead_s() if capacity.cps_per_step is not None else 0.0
    start = anchor + timedelta(seconds=lead + step * capacity.step_s)
    return StepWindow(
        step=step,
        calls=calls_at(definition, step),
        cps=cps_at(definition, step),
        start=start,
        judged_from=start + timedelta(seconds=capacity.settle_s),
        end=start + timedelta(seconds=capacity.step_s),
    )


def joined_by(definition: TestDefinition, ep: EndpointState, step: int) -> bool:
    """Is the endpoint part of the load at `step`? Receivers are there from the start."""
    if ep.role != "caller":
        return True
    assert definition.capacity is not None
    index = int(ep.endpoint_id.rsplit("-", 1)[1]) - 1
    return definition.capacity.step_of(index) <= step


def p95(values: Iterable[float]) -> float | None:
    """95th percentile, interpolated as PostgreSQL's percentile_cont."""
    xs = sorted(values)
    if not xs:
        return None
    pos = 0.95 * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def endpoint_values(
    definition: TestDefinition, endpoints: Iterable[EndpointState], step: int
) -> dict[str, float | None]:
    """Call success, registration success and the callers' timing percentiles of the
    endpoints in the load at `step` (the evaluator's definitions, per step)."""
    eps = [e for e in endpoints if joined_by(definition, e, step)]
    callers = [e for e in eps if e.role == "caller"]
    connected = [
        e
        for e in callers
        if e.call_setup_ms is not None and (e.outcome is None or e.outcome in GOOD_OUTCOMES)
    ]
    registered = [e for e in eps if e.contact_uri or e.time_to_register_ms is not None]
    return {
        "call_success_rate": 100.0 * len(connected) / len(callers) if callers else None,
        "registration_success_rate": 100.0 * len(registered) / len(eps) if eps else None,
        "post_dial_delay_p95_ms": p95(
            e.post_dial_delay_ms for e in callers if e.post_dial_delay_ms is not None
        ),
        "call_setup_p95_ms": p95(e.call_setup_ms for e in callers if e.call_setup_ms is not None),
    }


CallTiming = tuple[str, float | None, float | None]  # outcome, PDD ms, setup ms


def record_values(calls: Iterable[CallTiming]) -> dict[str, float | None]:
    """Call success and the timing percentiles of the calls attempted in a step (their
    records): a call succeeded when it was set up and its outcome is good, as an
    endpoint's call does in `endpoint_values`."""
    xs = list(calls)
    connected = [c for c in xs if c[2] is not None and c[0] in GOOD_OUTCOMES]
    return {
        "call_success_rate": 100.0 * len(connected) / len(xs) if xs else None,
        "post_dial_delay_p95_ms": p95(c[1] for c in xs if c[1] is not None),
        "call_setup_p95_ms": p95(c[2] for c in xs if c[2] is not None),
    }


def judge_step(
    definition: TestDefinition,
    run_id: str,
    window: StepWindow,
    values: dict[str, float | None],
    overloaded_at: datetime | None,
) -> CapacityStepJudged:
    results = evaluate([parse(t) for t in definition.stop_conditions()], values)
    reason = ""
    if overloaded_at is not None and overloaded_at < window.end:
        reason = (
            f"the load generator was overloaded from {overloaded_at:%H:%M:%S}:"
            " this step measured the generator, not the system"
        )
    return CapacityStepJudged(
        run_id=run_id,
        step=window.step,
        calls=window.calls,
        cps=window.cps,
        window_start=window.judged_from,
        window_end=window.end,
        passed=not reason and all(r.passed for r in results),
        results=[r.__dict__ for r in results],
        metrics=values,
        reason=reason,
    )


def answer(definition: TestDefinition, steps: Iterable[CapacityStepJudged]) -> dict[str, Any]:
    """The capacity answer so far: the last step passed before the first failure."""
    assert definition.capacity is not None
    ordered = sorted(steps, key=lambda s: s.step)
    passed: CapacityStepJudged | None = None
    failed: CapacityStepJudged | None = None
    for s in ordered:
        if not s.passed:
            failed = s
            break
        passed = s
    conditions = ", ".join(definition.stop_conditions())
    total = definition.capacity_steps()
    in_cps = definition.capacity.cps_per_step is not None

    def load(s: CapacityStepJudged | None) -> str:
        if in_cps:
            return f"{(s.cps or 0.0) if s else 0.0:g} calls/s"
        return f"{s.calls if s else 0} concurrent calls"

    if passed is None and failed is None:
        text = "no step judged yet"
    elif passed is None:
        text = f"not even {load(failed)} met {conditions}"
    else:
        text = f"sustains {load(passed)} with {conditions}"
        if failed is None and passed.step == total - 1:
            text += " (every step passed: the most it was asked for)"
    if failed is not None:
        why = failed.reason or "; ".join(
            f"{r.expression} (actual {'—' if r.actual is None else f'{r.actual:.3g}'})"
            for r in failed.results
            if not r.passed
        )
        text += f"; {load(failed) if in_cps else failed.calls} failed: {why}"
    capacity = definition.capacity
    calls = passed.calls if passed else 0
    cps = (passed.cps or 0.0) if passed else 0.0
    met: bool | None = None
    if capacity.target_calls is not None:
        met = calls >= capacity.target_calls
    elif capacity.target_cps is not None:
        met = cps >= capacity.target_cps - 1e-9
    return {
        "calls": calls if passed else None,
        "cps": cps if passed and in_cps else None,
        "step": passed.step if passed else None,
        "text": text,
        "finished": failed is not None or len(ordered) == total,
        "target_calls": capacity.target_calls,
        "target_cps": capacity.target_cps,
        "target_met": met,
        "steps": [s.model_dump(mode="json") for s in ordered],
    }
