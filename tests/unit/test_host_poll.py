"""How long an endpoint host's loop waits in libHandleEvents (host/main.py)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pjsua2")

from callmeter_worker.host.main import MAX_POLL_MS, poll_wait_ms  # noqa: E402


def test_nothing_due_waits_the_longest() -> None:
    assert poll_wait_ms(100.0, []) == MAX_POLL_MS == 200
    assert poll_wait_ms(100.0, [math.inf, 101.0]) == MAX_POLL_MS


def test_waits_until_the_earliest_wake() -> None:
    assert poll_wait_ms(100.0, [100.5, 100.03, math.inf]) == 30


def test_a_wake_between_milliseconds_is_rounded_up_never_to_a_spin() -> None:
    assert poll_wait_ms(100.0, [100.0205]) == 21
    assert poll_wait_ms(100.0, [100.0000001]) == 1


def test_an_overdue_wake_does_not_wait() -> None:
    assert poll_wait_ms(100.0, [99.0, 100.5]) == 0
