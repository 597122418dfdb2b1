"""Bus.patiently: transient NATS answers are tried again, anything else is not."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.errors import NotFoundError, ServiceUnavailableError

from callmeter_common.bus import Bus


def _bus(retry_s: float) -> Bus:
    bus = Bus(nc=None, js=None, service="test")  # type: ignore[arg-type]
    bus.publish_retry_s = retry_s
    return bus


def test_a_transient_error_is_tried_again_until_the_call_succeeds() -> None:
    calls = []

    async def electing() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ServiceUnavailableError  # "JetStream system temporarily unavailable"
        return 7

    assert asyncio.run(_bus(10).patiently("stream", electing)) == 7
    assert len(calls) == 3


def test_other_errors_and_a_spent_patience_are_raised() -> None:
    calls = []

    async def missing() -> int:
        calls.append(1)
        raise NotFoundError

    with pytest.raises(NotFoundError):
        asyncio.run(_bus(10).patiently("stream", missing))
    assert len(calls) == 1

    async def never() -> int:
        raise ServiceUnavailableError

    with pytest.raises(ServiceUnavailableError):
        asyncio.run(_bus(0.2).patiently("stream", never))
