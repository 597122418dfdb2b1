"""When an endpoint's next tick must come if no pjsip event comes first
(Endpoint.wake_at): the host's loop sleeps until the earliest of them."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("pjsua2")

from callmeter_worker.host.endpoint import FINE_WAIT_S, RECEIVER_SAFETY_S, Endpoint  # noqa: E402

NOW = 1000.0


def endpoint(role: str, **cmd: Any) -> Endpoint:
    base = {
        "endpoint_id": "g-1",
        "role": role,
        "duration_s": 30,
        "call_wait_s": 20,
        "username": "u1",
        "options": {},
    }
    return Endpoint(SimpleNamespace(), base | cmd, ["PCMA/8000/1"])  # type: ignore[arg-type]


def in_call(e: Endpoint, confirmed_ago: float | None) -> Endpoint:
    e.ready, e.call = True, SimpleNamespace(disconnected=False)  # type: ignore[assignment]
    e.t_confirmed = None if confirmed_ago is None else NOW - confirmed_ago
    e.next_sample, e.first_rtp_ms, e.hold_s = NOW + 0.7, 12.0, 2.0
    return e


def test_a_waiting_caller_wakes_for_its_next_call_only() -> None:
    e = endpoint("caller")
    assert e.wake_at(NOW) == math.inf  # not registered yet: only an event moves it
    e.ready, e.next_call = True, (NOW + 0.3, 2.0)
    assert e.wake_at(NOW) == NOW + 0.3
    e.stopped = True
    assert e.wake_at(NOW) == NOW + FINE_WAIT_S  # ends its calls at the next tick


def test_a_call_in_setup_or_teardown_is_ticked_finely() -> None:
    e = in_call(endpoint("caller"), confirmed_ago=None)
    assert e.wake_at(NOW) == NOW + FINE_WAIT_S
    in_call(e, confirmed_ago=0.5)
    e.hangup_at = NOW - 0.01
    assert e.wake_at(NOW) == NOW + FINE_WAIT_S


def test_a_confirmed_call_wakes_for_its_hangup_or_its_next_sample() -> None:
    e = in_call(endpoint("caller"), confirmed_ago=1.5)
    assert e.wake_at(NOW) == pytest.approx(NOW + 0.5)  # hangup: 2 s hold
    e.hold_s = 10.0
    assert e.wake_at(NOW) == NOW + 0.7  # next per-second sample
    e.first_rtp_ms, e.next_rtp_poll = None, NOW + 0.02
    assert e.wake_at(NOW) == NOW + 0.02  # polls for the first RTP packet


def test_a_receiver_wakes_for_its_safety_hangup() -> None:
    e = in_call(endpoint("receiver", duration_s=5), confirmed_ago=5 + RECEIVER_SAFETY_S - 0.1)
    assert e.wake_at(NOW) == pytest.approx(NOW + 0.1)


def test_a_scenario_step_or_queued_digit_is_a_wake() -> None:
    e = endpoint("caller", scenario=[{"action": "hold", "at_s": 1.2}])
    in_call(e, confirmed_ago=1.0)
    e.hold_s = 10.0
    assert e.wake_at(NOW) == pytest.approx(NOW + 0.2)
    e.scenario.info_queue.append((1.05, "5"))
    assert e.wake_at(NOW) == pytest.approx(NOW + 0.05)
    e.scenario.pending.clear()
    e.scenario.info_queue.clear()
    assert e.wake_at(NOW) == NOW + 0.7
