"""The pure call plan of one caller endpoint (services/worker/callplan.py)."""

from __future__ import annotations

import math

import pytest

from callmeter_worker.callplan import CallPlan, arrival_time, hold_time, rate_integral


def _all_starts(pattern: dict, count: int, duration: float) -> list[float]:
    """Every start of every endpoint, each endpoint free again at once (no skips)."""
    starts = []
    for index in range(count):
        plan = CallPlan(pattern, index, count, duration)
        while (call := plan.next_call(0.0)) is not None:
            starts.append(call[0])
    return sorted(starts)


def test_single_is_one_call_for_the_run() -> None:
    plan = CallPlan({"kind": "single"}, 0, 1, 30.0)
    assert plan.next_call(0.0) == (0.0, 30.0)
    assert plan.next_call(0.0) is None


def test_repeat_calls_until_count_or_end() -> None:
    plan = CallPlan({"kind": "repeat", "hold_s": 2, "pause_s": 1, "calls": 3}, 0, 1, 60.0)
    t, holds = 0.0, []
    while (call := plan.next_call(t)) is not None:
        holds.append(call)
        t = plan.after_call(call[0], call[0] + call[1] + 0.1)
    assert [h[1] for h in holds] == [2.0, 2.0, 2.0]
    assert holds[1][0] == pytest.approx(3.1)
    plan = CallPlan({"kind": "repeat", "hold_s": 2, "pause_s": 1}, 0, 1, 7.0)
    assert plan.next_call(0.0) and plan.next_call(3.0) and plan.next_call(6.0)
    assert plan.next_call(7.0) is None  # nothing starts after the run's duration


def test_a_failed_repeat_call_still_takes_its_cycle() -> None:
    plan = CallPlan({"kind": "repeat", "hold_s": 2, "pause_s": 1}, 0, 1, 60.0)
    assert plan.after_call(10.0, 10.05) == 13.0  # failed at once: next a cycle later
    assert plan.after_call(10.0, 12.5) == 13.5  # answered late: pause after the end


def test_constant_rate_spread_over_endpoints() -> None:
    starts = _all_starts({"kind": "rate", "cps": 4, "hold_s": 1}, 3, 5.0)
    assert len(starts) == 20
    assert starts == pytest.approx([k / 4 for k in range(20)])


def test_linear_ramp_integral_and_inverse_agree() -> None:
    pattern = {"kind": "rate", "cps": 1, "cps_end": 5, "ramp_s": 4, "hold_s": 1}
    assert rate_integral(pattern, 4) == pytest.approx(12)  # (1 + 5) / 2 * 4
    assert rate_integral(pattern, 6) == pytest.approx(22)
    for k in range(1, 30):
        assert rate_integral(pattern, arrival_time(pattern, k)) == pytest.approx(k)
    assert len(_all_starts(pattern, 4, 6.0)) == 22  # arrivals 0..21 start before 6 s


def test_steps() -> None:
    pattern = {
        "kind": "rate",
        "steps": [{"at_s": 0, "cps": 2}, {"at_s": 2, "cps": 0}, {"at_s": 3, "cps": 10}],
        "hold_s": 1,
    }
    assert rate_integral(pattern, 3.5) == pytest.approx(4 + 5)
    for k in range(1, 20):
        assert rate_integral(pattern, arrival_time(pattern, k)) == pytest.approx(k)
    starts = _all_starts(pattern, 5, 4.0)
    assert not [s for s in starts if 2 < s < 3]  # the zero step makes no calls
    assert len(starts) == 14  # 4 in [0, 2), then 10 in [3, 4)
    assert arrival_time({"steps": [{"at_s": 0, "cps": 1}, {"at_s": 1, "cps": 0}]}, 5) == math.inf


def test_max_calls_and_busy_endpoint_skips() -> None:
    pattern = {"kind": "rate", "cps": 10, "hold_s": 1, "max_calls": 7}
    assert len(_all_starts(pattern, 2, 100.0)) == 7
    plan = CallPlan({"kind": "rate", "cps": 10, "hold_s": 1}, 0, 2, 10.0)
    assert plan.next_call(0.0) == (0.0, 1.0)
    start, _ = plan.next_call(1.05)  # busy until 1.05: arrivals at 0.2 .. 1.0 skipped
    assert start == pytest.approx(1.2) and plan.skipped == 5


def test_exponential_holds_are_seeded_with_the_mean() -> None:
    pattern = {"kind": "rate", "cps": 1, "hold": "exponential", "hold_s": 3.0, "seed": 7}
    holds = [hold_time(pattern, k) for k in range(4000)]
    assert holds == [hold_time(pattern, k) for k in range(4000)]
    assert sum(holds) / len(holds) == pytest.approx(3.0, rel=0.06)
    assert holds != [hold_time({**pattern, "seed": 8}, k) for k in range(4000)]
