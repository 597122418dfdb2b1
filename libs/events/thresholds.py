"""Pass/fail thresholds: `mos_avg >= 4.0`, parsed once, evaluated purely."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The run results a threshold may name, and what each means (documented for users).
# Quality figures are measured where each stream is received. A run has two directions,
# named as the calling side sees them: send (caller -> callee) and recv (callee -> caller).
# The plain names mean the worse of the two (never their average); `<name>_send` and
# `<name>_recv` judge one direction.
QUALITY_METRICS: dict[str, str] = {
    "mos_avg": "average per-second MOS",
    "mos_min": "lowest per-second MOS",
    "mos_p5": "5th percentile of per-second MOS (95% of seconds were at least this)",
    "mos_p50": "median per-second MOS",
    "jitter_avg_ms": "average interarrival jitter",
    "jitter_p95_ms": "95th percentile interarrival jitter",
    "loss_avg_pct": "packets lost over packets expected, percent",
    "rtt_avg_ms": "average RTCP round-trip time",
    "rtt_p95_ms": "95th percentile RTCP round-trip time",
}
# PESQ MOS-LQO (ITU-T P.862) of the calls a run scores (speech_quality_calls): measured
# where the caller's audio is received, once each call has ended, so never per direction
# or per capacity step.
SPEECH_METRICS: dict[str, str] = {
    "mos_lqo_avg": "average PESQ MOS-LQO of the scored calls",
    "mos_lqo_min": "lowest PESQ MOS-LQO of the scored calls",
}
SIDES = {
    "": "the worse direction",
    "_send": "what callers send (caller -> callee)",
    "_recv": "what callers receive (callee -> caller)",
}
METRICS: dict[str, str] = (
    {
        f"{name}{suffix}": f"{text}, {side}"
        for name, text in QUALITY_METRICS.items()
        for suffix, side in SIDES.items()
    }
    | SPEECH_METRICS
    | {
        "call_success_rate": "percent of callers whose call succeeded",
        "registration_success_rate": "percent of endpoints that registered (or became ready)",
        "post_dial_delay_p95_ms": "95th percentile post-dial delay (INVITE to first 180/183)",
        "call_setup_p95_ms": "95th percentile call setup time (INVITE to 200 OK)",
    }
)
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_EXPR = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class ThresholdResult:
    expression: str
    actual: float | None
    passed: bool


NOT_MEASURED = "not measured"


def verdict(actual: float | None, passed: bool) -> str:
    """How a judged threshold is reported: "pass", "FAIL", or "not measured" when the run
    had no value for it (e.g. mos_lqo_avg with no call scored), which never passes."""
    if actual is None:
        return NOT_MEASURED
    return "pass" if passed else "FAIL"


def parse(expression: str) -> Threshold:
    """`mos_avg >= 4.0` -> Threshold; ValueError naming what is wrong."""
    match = _EXPR.match(expression)
    if not match:
        raise ValueError(f"{expression!r} is not '<metric> <op> <number>' (op: >=, <=, >, <, ==)")
    metric, op, value = match.groups()
    if metric not in METRICS:
        raise ValueError(f"unknown threshold metric {metric!r}; known: {', '.join(METRICS)}")
    return Threshold(metric, op, float(value))


def evaluate(
    thresholds: list[Threshold], results: Mapping[str, float | None]
) -> list[ThresholdResult]:
    """Each threshold against the run's results. A metric with no value is not measured
    (verdict) and does not pass: a gate on a figure nobody measured must not go green."""
    out = []
    for t in thresholds:
        actual = results.get(t.metric)
        passed = actual is not None and OPERATORS[t.op](round(actual, 6), t.value)
        out.append(ThresholdResult(str(t), actual, passed))
    return out
