"""Capacity search: the steps of a run, each step's verdict, and the answer. Pure.

A capacity run's callers join in steps (TestDefinition.capacity; the dispatcher
delays caller n by its step's start). Step k starts `k * step_s` after the run's
first callers went out and is judged on its own seconds, from `settle_s` after
its start to its end, against the stop conditions: quality values from the
window's samples (callmeter_storage.stats.window_threshold_values), call,
registration and timing values from the endpoints that had joined by then
(`endpoint_values`). A step the load generator was overloaded in fails whatever
its figures: they measured the generator. The answer is the last step that passed
before the first one that failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callmeter_events import GOOD_OUTCOMES, CapacityStepJudged, TestDefinition
from callmeter_events.thresholds import evaluate, parse
from callmeter_projections import EndpointState


@dataclass(frozen=True)
class StepWindow:
    step: int
    calls: int  # callers that have joined by this step: concurrent calls asked for
    start: datetime  # the step's callers go out
    judged_from: datetime  # start + settle_s
    end: datetime


def calls_at(definition: TestDefinition, step: int) -> int:
    """Callers that have joined by `step` (0-based), over every calling group."""
    assert definition.capacity is not None
    joined = (step + 1) * definition.capacity.endpoints_per_step
    return sum(min(g.endpoints, joined) for g in definition.groups if g.calls or g.target_uri)


def step_window(definition: TestDefinition, anchor: datetime, step: int) -> StepWindow:
    capacity = definition.capacity
    assert capacity is not None
    start = anchor + timedelta(seconds=step * capacity.step_s)
    return StepWindow(
        step=step,
        calls=calls_at(definition, step),
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
    if passed is None and failed is None:
        text = "no step judged yet"
    elif passed is None:
        text = f"not even {failed.calls if failed else 0} concurrent calls met {conditions}"
    else:
        text = f"sustains {passed.calls} concurrent calls with {conditions}"
        if failed is None and passed.step == total - 1:
            text += " (every step passed: the most it was asked for)"
    if failed is not None:
        why = failed.reason or "; ".join(
            f"{r.expression} (actual {'—' if r.actual is None else f'{r.actual:.3g}'})"
            for r in failed.results
            if not r.passed
        )
        text += f"; {failed.calls} failed: {why}"
    target = definition.capacity.target_calls
    calls = passed.calls if passed else 0
    return {
        "calls": calls if passed else None,
        "step": passed.step if passed else None,
        "text": text,
        "finished": failed is not None or len(ordered) == total,
        "target_calls": target,
        "target_met": None if target is None else calls >= target,
        "steps": [s.model_dump(mode="json") for s in ordered],
    }
