"""Worker heartbeats come from a thread of their own (services/worker/supervisor/
beats.py): a supervisor loop that cannot run for seconds (starved of CPU while its
endpoint hosts start) does not silence them, and a loop that has not run for longer
than `wedged_s` does, so the dispatcher still declares a stuck worker lost."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from callmeter_common.bus import Bus
from callmeter_common.servers import Server
from callmeter_events import WorkerHeartbeat
from callmeter_events.codec import decode
from callmeter_worker.supervisor.beats import HeartbeatThread

pytestmark = pytest.mark.integration


def beats_of(worker_id: str):  # type: ignore[no-untyped-def]
    seq = itertools.count(1)
    return lambda free_slots: WorkerHeartbeat(
        worker_id=worker_id, capacity=4, free_slots=free_slots, load=0.0, seq=next(seq)
    )


async def test_a_starved_loop_keeps_beating_and_a_stuck_one_stops(nats_server: Server) -> None:
    bus = await Bus.connect(nats_server.url, "test-heartbeats")
    await bus.ensure_streams()
    made: dict[str, list[float]] = {"starved": [], "stuck": []}
    reported: dict[float, int] = {}  # beat's time -> the free slots it carried

    async def on_beat(msg) -> None:  # type: ignore[no-untyped-def]
        event = decode(msg.data)
        assert isinstance(event, WorkerHeartbeat)
        made[event.worker_id].append(event.occurred_at.timestamp())
        reported[event.occurred_at.timestamp()] = event.free_slots

    await bus.nc.subscribe(
        WorkerHeartbeat(worker_id="x", capacity=1, free_slots=1, load=0)
        .subject()
        .replace(".x.", ".*."),
        cb=on_beat,
    )
    try:
        # Starved: this loop cannot run for 3.5 s (a blocking sleep), never touches.
        # Its beats carry the figures of the loop's last touch.
        starved = HeartbeatThread(nats_server.url, "t1", beats_of("starved"), 4, 0.5, 10.0)
        starved.start()
        await asyncio.sleep(0.8)
        starved.touch(3)
        blocked_from = time.time()
        time.sleep(3.5)  # noqa: ASYNC251 -- the point: the loop does not run
        blocked_to = time.time()
        await asyncio.sleep(1.0)
        starved.stop()
        during = [t for t in made["starved"] if blocked_from <= t <= blocked_to]
        assert len(during) >= 5, made["starved"]  # every 0.5 s while the loop was blocked
        assert {reported[t] for t in during} == {3}

        # Stuck: touched once, then not for longer than wedged_s: the beats stop.
        stuck = HeartbeatThread(nats_server.url, "t2", beats_of("stuck"), 4, 0.5, 1.5)
        stuck.start()
        await asyncio.sleep(4.0)
        stuck.stop()
        assert 1 <= len(made["stuck"]) <= 4, made["stuck"]  # only within 1.5 s of the start
        assert max(made["stuck"]) - min(made["stuck"]) <= 1.6
    finally:
        await bus.close()
