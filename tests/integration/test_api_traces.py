"""Reading one endpoint's history back from JetStream (real nats-server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from callmeter_api.traces import endpoint_history
from callmeter_common.bus import Bus
from callmeter_events import CallProgress, EndpointPhaseChanged, SipMessage

pytestmark = pytest.mark.integration


async def test_history_is_filtered_to_the_endpoint_ordered_and_finite(nats_server):  # type: ignore[no-untyped-def]
    bus = await Bus.connect(nats_server.url, "test-traces")
    await bus.ensure_streams()
    run = uuid.uuid4().hex[:12]
    t0 = datetime.now(UTC)
    try:
        # Two endpoints talk; only A-1's messages and events must come back, in order.
        for i, (ep, direction) in enumerate([("A-1", "out"), ("B-1", "in"), ("A-1", "in")]):
            text = f"MSG {i} SIP/2.0\r\nCall-ID: {run}\r\n\r\n"
            await bus.publish(SipMessage(run_id=run, endpoint_id=ep, direction=direction,
                                         ts=t0 + timedelta(milliseconds=i), text=text))  # fmt: skip
        await bus.publish(EndpointPhaseChanged(run_id=run, endpoint_id="A-1", phase="CALLING"))
        await bus.publish(EndpointPhaseChanged(run_id=run, endpoint_id="A-10", phase="CALLING"))
        await bus.publish(CallProgress(run_id=run, endpoint_id="A-1", sip_code=180))

        events, messages = await endpoint_history(bus, run, "A-1")
        assert [m["text"].split(" ")[1] for m in messages] == ["0", "2"]
        assert [m["direction"] for m in messages] == ["out", "in"]
        assert [e["type"] for e in events] == ["EndpointPhaseChanged", "CallProgress"]

        # An endpoint with nothing recorded reads as empty, promptly.
        assert await endpoint_history(bus, run, "C-1") == ([], [])
    finally:
        await bus.close()
