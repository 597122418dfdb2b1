"""A real worker hands ReceiverWaitExtended to its endpoint host: the receiver waits for
its first call until its caller's deadline, past its own call_wait_s (the dispatcher's
side is tests/unit/test_dispatch.py, the host's tests/integration/test_host_calls.py).
Only NATS and one worker: the test publishes the dispatcher's events itself."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callmeter_common.bus import Bus
from callmeter_common.servers import Server
from callmeter_events import (
    EndpointAssigned,
    EndpointConfig,
    EndpointFinished,
    ReceiverWaitExtended,
    RepeatPattern,
    decode,
)
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

WORKER = "rxwait-w1"
CALL_WAIT_S = 2.0
EXTRA_S = 10.0  # the extended receiver waits this long after the test starts


async def test_a_receiver_waits_for_its_first_call_until_its_callers_deadline(
    tmp_path: Path, own_nats: Server, own_bus: Bus, postgres_server: Any
) -> None:
    run_id = "rxwait-run"
    finished: dict[str, tuple[EndpointFinished, float]] = {}

    async def on_msg(msg: Any) -> None:
        event = decode(msg.data)
        if isinstance(event, EndpointFinished):
            finished[event.endpoint_id] = (event, time.time())

    sub = await own_bus.nc.subscribe(f"callmeter.run.{run_id}.endpoint.*.finished", cb=on_msg)
    platform = TestPlatform(tmp_path / "platform", own_nats.url, postgres_server.url)
    platform.start_services(())  # no service: only its environment, for the worker
    platform.start_worker(WORKER, CALLMETER_CAPACITY="4")
    try:
        until = datetime.now(UTC) + timedelta(seconds=EXTRA_S)
        for n in (1, 2):
            config = EndpointConfig(
                group="B",
                role="receiver",
                codecs=["PCMU"],
                duration_s=2,
                username=f"b-{n}",
                call_wait_s=CALL_WAIT_S,
                pattern=RepeatPattern(kind="repeat", hold_s=1),
            )
            await own_bus.publish(
                EndpointAssigned(
                    run_id=run_id, endpoint_id=f"B-{n}", worker_id=WORKER, config=config
                )
            )
        # the caller of B-1 went out (B-2's never did)
        await own_bus.publish(
            ReceiverWaitExtended(
                run_id=run_id,
                endpoint_id="B-1",
                worker_id=WORKER,
                caller_id="A-1",
                wait_until=until,
            )
        )
        deadline = time.monotonic() + EXTRA_S + 30
        while len(finished) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await sub.unsubscribe()
        platform.stop()
    assert set(finished) == {"B-1", "B-2"}, finished
    b1, b1_at = finished["B-1"]
    b2, b2_at = finished["B-2"]
    assert b2.outcome == "NO_INCOMING_CALL" and "caller" not in b2.reason, b2
    assert b1.outcome == "NO_INCOMING_CALL" and "and of its caller going out" in b1.reason, b1
    # B-2 ended call_wait_s after being ready, B-1 only once its caller's deadline passed
    assert b2_at < until.timestamp() <= b1_at < until.timestamp() + 5, (b2_at, b1_at, until)
