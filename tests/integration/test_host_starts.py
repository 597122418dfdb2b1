"""The host pool starts at most `max_starting` endpoint hosts at once (real hosts, ~2 s).

Many hosts importing pjsua2 together starved the supervisor of CPU until its
heartbeats came 10 s late and the worker was declared lost (bench/cps.py)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from callmeter_worker.supervisor.hostpool import EndpointHost, HostPool, HostProfile

pytestmark = pytest.mark.integration
pytest.importorskip("pjsua2")


async def test_hosts_start_a_few_at_a_time_and_each_next_once_one_is_ready() -> None:
    async def ignore(*_args: object) -> None:
        return None

    low = random.randrange(20_000, 50_000, 1_000)
    pool = HostPool(
        1, 20, "127.0.0.1", 5.0, ignore, ignore, ports=(low, low + 1_000), max_starting=2
    )
    starting: list[int] = []  # hosts started and not ready, every 5 ms

    async def watch() -> None:
        while True:
            starting.append(sum(1 for h in list(pool.hosts.values()) if not h.ready.is_set()))
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    # one endpoint per host: five endpoints ask for five hosts at once
    until = {"op": "wait_until", "until_t": time.time()}
    try:
        hosts: list[EndpointHost] = await asyncio.wait_for(
            asyncio.gather(
                *(pool.place("run", f"e{i}", until, HostProfile()) for i in range(5))  # type: ignore[arg-type]
            ),
            timeout=60,
        )
        # every host started and became ready
        assert len({h.host_id for h in hosts}) == 5
        assert all(h.ready.is_set() and not h.lost for h in hosts)
    finally:
        watcher.cancel()
        await pool.shutdown()
    # never more than two starting together, and two did (a bound, not one at a time)
    assert max(starting) == 2, starting


async def test_a_free_slot_is_used_while_another_endpoint_waits_for_a_start() -> None:
    """With one start at a time: e0 starts host A (2 slots); x needs a host of another
    profile and waits for the start slot; e1 takes A's second slot at once, not only
    after A is ready (the wait for a start slot holds no lock)."""

    async def ignore(*_args: object) -> None:
        return None

    low = random.randrange(20_000, 50_000, 1_000)
    pool = HostPool(
        2, 20, "127.0.0.1", 5.0, ignore, ignore, ports=(low, low + 1_000), max_starting=1
    )
    until = {"op": "wait_until", "until_t": time.time()}
    g711, g722 = HostProfile(), HostProfile(codecs=("G722",))
    try:
        e0 = asyncio.ensure_future(pool.place("run", "e0", until, g711))  # type: ignore[arg-type]
        while not pool.hosts:
            await asyncio.sleep(0.001)
        (a,) = pool.hosts.values()
        x = asyncio.ensure_future(pool.place("run", "x", until, g722))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        e1 = asyncio.ensure_future(pool.place("run", "e1", until, g711))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not a.ready.is_set()  # A still starting (a host takes ~0.3 s and more)
        assert a.placed == 2 and len(pool.hosts) == 1  # e1 on A; x still waits to start
        hosts = await asyncio.wait_for(asyncio.gather(e0, x, e1), timeout=60)
        assert hosts[0] is hosts[2] is a and hosts[1] is not a
    finally:
        await pool.shutdown()
