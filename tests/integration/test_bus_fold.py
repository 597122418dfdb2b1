"""Bus.fold with `skip`: named subjects are passed over undecoded (real NATS)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import callmeter_events as ev
from callmeter_common.bus import Bus
from callmeter_common.servers import Server


async def test_a_fold_skips_call_records_and_still_catches_up(own_nats: Server) -> None:
    bus = await Bus.connect(own_nats.url, "test")
    try:
        await bus.ensure_streams()
        at = datetime(2026, 12, 2, tzinfo=UTC)
        record = ev.CallRecorded(
            run_id="r1", endpoint_id="A-1", seq=1, attempted_at=at, outcome="SUCCESS"
        )
        finished = ev.EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="SUCCESS")
        await bus.publish(finished)
        await bus.publish(record)  # the stream's last message: skipped
        folded: list[tuple[int, str]] = []

        async def handler(seq: int, event: ev.Event) -> None:
            folded.append((seq, type(event).__name__))

        caught_up = asyncio.Event()
        sub = await bus.fold(ev.EVENTS, 1, handler, caught_up=caught_up, skip=ev.is_call_record)
        await asyncio.wait_for(caught_up.wait(), 10)
        assert folded == [(1, "EndpointFinished")]
        await sub.unsubscribe()
        everything: list[tuple[int, str]] = []

        async def all_of_them(seq: int, event: ev.Event) -> None:
            everything.append((seq, type(event).__name__))

        done = asyncio.Event()
        sub = await bus.fold(ev.EVENTS, 1, all_of_them, caught_up=done)
        await asyncio.wait_for(done.wait(), 10)
        assert everything == [(1, "EndpointFinished"), (2, "CallRecorded")]
        await sub.unsubscribe()
    finally:
        await bus.close()
