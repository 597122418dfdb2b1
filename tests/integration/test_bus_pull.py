"""Bus.pull_loop with `linger_s`: a trickle of messages reaches the handler in a few
batches instead of one message each (real NATS)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import callmeter_events as ev
from callmeter_common.bus import Bus
from callmeter_common.servers import Server

N, GAP_S = 12, 0.03  # 12 call records, 30 ms apart: a rate group's trickle


async def _batches(bus: Bus, durable: str, first_seq: int, linger_s: float) -> list[int]:
    """Sizes of the batches a pull loop hands over while N records trickle in."""
    sizes: list[int] = []
    stop = asyncio.Event()

    async def handler(batch: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(batch))
        for msg, _ in batch:
            await msg.ack()
        if sum(sizes) >= N:
            stop.set()

    loop = asyncio.create_task(
        bus.pull_loop(ev.EVENTS, durable, [ev.call_records()], handler, stop, linger_s=linger_s)
    )
    await asyncio.sleep(0.5)  # the consumer exists and waits (it starts at the stream's head)
    at = datetime(2026, 12, 2, tzinfo=UTC)
    for k in range(N):
        record = ev.CallRecorded(
            run_id=durable, endpoint_id="A-1", seq=first_seq + k, attempted_at=at, outcome="SUCCESS"
        )
        await bus.publish(record)
        await asyncio.sleep(GAP_S)
    await asyncio.wait_for(stop.wait(), 10)
    await loop
    return sizes


async def _trickle(url: str, linger_s: float) -> list[int]:
    bus = await Bus.connect(url, "test")
    try:
        await bus.ensure_streams()
        return await _batches(bus, "records", 1, linger_s)
    finally:
        await bus.close()


async def test_without_linger_a_trickle_comes_one_message_a_batch(own_nats: Server) -> None:
    sizes = await _trickle(own_nats.url, 0.0)
    assert sum(sizes) == N and len(sizes) >= N // 2, sizes


async def test_a_lingering_pull_loop_gathers_a_trickle(own_nats: Server) -> None:
    sizes = await _trickle(own_nats.url, 0.25)  # ~360 ms of records: two or three batches
    assert sum(sizes) == N and len(sizes) <= 4, sizes
