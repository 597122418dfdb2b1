"""How long an endpoint host's loop waits in libHandleEvents (host/main.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("pjsua2")

from callmeter_worker.host.main import BUSY_POLL_MS, IDLE_POLL_MS, poll_wait_ms  # noqa: E402


def test_calls_up_keep_the_fine_wait() -> None:
    assert poll_wait_ms(100.0, True, [100.5]) == BUSY_POLL_MS == 10


def test_an_idle_host_waits_longer_but_not_past_a_callers_next_call() -> None:
    assert poll_wait_ms(100.0, False, []) == IDLE_POLL_MS == 50
    assert poll_wait_ms(100.0, False, [101.0, 100.5]) == IDLE_POLL_MS
    assert poll_wait_ms(100.0, False, [100.5, 100.0205]) == 20  # rounded down: never late
    assert poll_wait_ms(100.0, False, [99.0]) == 0  # overdue: no wait at all
