"""When one caller endpoint starts its calls and how long it holds each. Pure.

A group's pattern (callmeter_events.testdef: single, repeat, rate) reaches the host as
a plain dict with the endpoint's place in its group (`index` from 0 of `count`). Times
are seconds from the moment the endpoint is ready to call.

Rate: the group's arrivals are numbered k = 0, 1, 2, ... at the times where the
cumulative rate reaches k (so the first is at 0); arrival k belongs to endpoint
k mod count. Each endpoint carries one call at a time, so an arrival that comes while
its endpoint is still in a call (or hanging up) is skipped: that is the cap on
concurrent calls. Every endpoint computes its own arrivals in closed form, without
planning the whole group.
"""

from __future__ import annotations

import math
import random
from typing import Any


def rate_integral(pattern: dict[str, Any], t: float) -> float:
    """Calls the rate asks for in [0, t] (the cumulative rate)."""
    steps = pattern.get("steps") or []
    if steps:
        total = 0.0
        for i, step in enumerate(steps):
            end = steps[i + 1]["at_s"] if i + 1 < len(steps) else math.inf
            if t <= step["at_s"]:
                break
            total += step["cps"] * (min(t, end) - step["at_s"])
        return total
    start, end, ramp = pattern["cps"], pattern.get("cps_end"), pattern.get("ramp_s") or 0.0
    if end is None or ramp <= 0:
        return start * t
    slope = (end - start) / ramp
    if t <= ramp:
        return start * t + slope * t * t / 2
    return start * ramp + slope * ramp * ramp / 2 + end * (t - ramp)


def arrival_time(pattern: dict[str, Any], k: int) -> float:
    """The time at which the cumulative rate reaches k (inf if it never does)."""
    if k <= 0:
        return 0.0
    steps = pattern.get("steps") or []
    if steps:
        done = 0.0
        for i, step in enumerate(steps):
            end = steps[i + 1]["at_s"] if i + 1 < len(steps) else math.inf
            rate = step["cps"]
            if rate > 0 and done + rate * (end - step["at_s"]) >= k:
                return step["at_s"] + (k - done) / rate
            if end == math.inf:
                return math.inf
            done += rate * (end - step["at_s"])
        return math.inf
    start, end, ramp = pattern["cps"], pattern.get("cps_end"), pattern.get("ramp_s") or 0.0
    if end is None or ramp <= 0:
        return k / start
    slope = (end - start) / ramp
    at_ramp_end = rate_integral(pattern, ramp)
    if k >= at_ramp_end:
        return ramp + (k - at_ramp_end) / end
    if slope == 0:
        return k / start
    # start*t + slope*t^2/2 = k, the root in [0, ramp]
    return (-start + math.sqrt(start * start + 2 * slope * k)) / slope


def hold_time(pattern: dict[str, Any], k: int) -> float:
    """Seconds call k is held once answered: fixed, or exponential with mean hold_s."""
    mean = float(pattern["hold_s"])
    if pattern.get("hold") != "exponential":
        return mean
    u = random.Random(f"{pattern.get('seed', 0)}:{k}").random()  # same run, same holds
    return -mean * math.log(1.0 - u)


class CallPlan:
    """The calls of one caller endpoint, asked one at a time."""

    def __init__(self, pattern: dict[str, Any], index: int, count: int, duration_s: float):
        self.pattern, self.index, self.count = pattern, index, max(1, count)
        self.duration_s = duration_s
        self.kind: str = pattern.get("kind", "single")
        self.made = 0  # calls handed out
        self.skipped = 0  # rate arrivals skipped: the endpoint was still in a call
        self._k = index  # rate: the next arrival of this endpoint

    @property
    def multi(self) -> bool:
        return self.kind != "single"

    def next_call(self, not_before: float) -> tuple[float, float] | None:
        """(start, hold) of the next call starting at or after `not_before`; None: done."""
        if self.kind == "single":
            if self.made:
                return None
            self.made += 1
            return max(0.0, not_before), self.duration_s
        if self.kind == "repeat":
            calls = self.pattern.get("calls")
            if (calls is not None and self.made >= calls) or not_before >= self.duration_s:
                return None
            self.made += 1
            return max(0.0, not_before), float(self.pattern["hold_s"])
        max_calls = self.pattern.get("max_calls")
        while True:
            k = self._k
            if max_calls is not None and k >= max_calls:
                return None
            start = arrival_time(self.pattern, k)
            if start >= self.duration_s:
                return None
            self._k += self.count
            if start + 1e-9 < not_before:
                self.skipped += 1
                continue
            self.made += 1
            # an exponential hold is cut at the run's duration: a receiver hangs up a
            # call that outlasts that (plus a margin) as one whose caller is gone
            return start, min(hold_time(self.pattern, k), self.duration_s)

    def after_call(self, started_at: float, ended_at: float) -> float:
        """Earliest start of the next call after one attempted at `started_at` ended at
        `ended_at`. Repeat: `pause_s` after the end, and never sooner than a whole cycle
        (hold + pause) after the attempt, so a call that fails at once does not turn the
        endpoint into a tight loop of INVITEs (churn is what aborts a pjsua2 process)."""
        if self.kind == "repeat":
            pause, hold = float(self.pattern.get("pause_s") or 0.0), float(self.pattern["hold_s"])
            return max(ended_at + pause, started_at + hold + pause)
        return ended_at
