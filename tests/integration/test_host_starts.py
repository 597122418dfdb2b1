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
