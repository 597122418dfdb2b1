"""An endpoint's history: its events read back from JetStream, its SIP messages stored in
PostgreSQL by the trace writer of metrics-ingest (real nats-server, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from callmeter_api.traces import endpoint_history
from callmeter_common.bus import Bus
from callmeter_events import TRACES, CallProgress, EndpointPhaseChanged, SipMessage
from callmeter_ingest.traces import consume_traces
from callmeter_storage.migrations import migrate

pytestmark = pytest.mark.integration


async def test_history_is_filtered_to_the_endpoint_ordered_and_outlives_the_buffer(
    nats_server, database_url
):  # type: ignore[no-untyped-def]
    migrate(database_url)
    bus = await Bus.connect(nats_server.url, "test-traces")
    await bus.ensure_streams()
    run = uuid.uuid4().hex[:12]
    t0 = datetime.now(UTC)
    stop = asyncio.Event()
    writer = asyncio.create_task(consume_traces(bus, database_url, stop))
    try:
        # Two endpoints talk; only A-1's messages and events must come back, in order.
        for i, (ep, direction) in enumerate([("A-1", "out"), ("B-1", "in"), ("A-1", "in")]):
            text = f"MSG {i} SIP/2.0\r\nCall-ID: {run}\r\n\r\n"
            await bus.publish(
                SipMessage(
                    run_id=run,
                    endpoint_id=ep,
                    direction=direction,
                    ts=t0 + timedelta(milliseconds=i),
                    text=text,
                )
            )
        await bus.publish(EndpointPhaseChanged(run_id=run, endpoint_id="A-1", phase="CALLING"))
        await bus.publish(EndpointPhaseChanged(run_id=run, endpoint_id="A-10", phase="CALLING"))
        await bus.publish(CallProgress(run_id=run, endpoint_id="A-1", sip_code=180))

        for _ in range(100):
            events, messages = await endpoint_history(bus, database_url, run, "A-1")
            if len(messages) == 2:
                break
            await asyncio.sleep(0.1)
        assert [m["text"].split(" ")[1] for m in messages] == ["0", "2"]
        assert [m["direction"] for m in messages] == ["out", "in"]
        assert [e["type"] for e in events] == ["EndpointPhaseChanged", "CallProgress"]

        # The ladder is read from PostgreSQL: gone from the TRACES buffer, it stays.
        await bus.js.purge_stream(TRACES.name, subject=f"callmeter.trace.{run}.>")
        again = await endpoint_history(bus, database_url, run, "A-1")
        assert again == (events, messages)

        # An endpoint with nothing recorded reads as empty, promptly.
        assert await endpoint_history(bus, database_url, run, "C-1") == ([], [])
    finally:
        stop.set()
        await writer
        await bus.close()
