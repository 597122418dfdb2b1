"""Live run feeds (services/api/live.py) without servers: reads are shared by the pages
watching a run and driven by its events, not by the number of pages or the clock."""

from __future__ import annotations

import asyncio
from typing import Any

from callmeter_api.live import LiveRuns
from callmeter_events import RunQueued, StopRequested


class Runs:
    """What a read returns: the run's status, counted per run."""

    def __init__(self) -> None:
        self.status = {"r1": "PENDING", "r2": "PENDING"}
        self.reads: dict[str, int] = {"r1": 0, "r2": 0}
        self.asked_visible: list[int] = []

    async def load(self, run_id: str) -> Any:
        self.reads[run_id] += 1
        return {"run": run_id, "status": self.status[run_id]}

    async def visible(self, seq: int, timeout: float) -> bool:
        self.asked_visible.append(seq)
        return True


def live(runs: Runs) -> LiveRuns:
    return LiveRuns(
        runs.load,
        runs.visible,
        lambda v: v["status"] not in ("COMPLETED", "FAILED"),
        interval_s=0.01,
        refresh_s=3600,
    )


async def test_pages_of_a_run_share_one_read_per_change() -> None:
    runs = Runs()
    feeds = live(runs)
    async with feeds.watch("r1") as a, feeds.watch("r1") as b, feeds.watch("r1") as c:
        first = [await asyncio.wait_for(q.get(), 1) for q in (a, b, c)]
        assert all(f["status"] == "PENDING" for f in first) and runs.reads["r1"] == 1
        await asyncio.sleep(0.1)  # no event: no read, however many pages are open
        assert runs.reads["r1"] == 1
        # An event of the run: one read after the read models show it, to every page.
        runs.status["r1"] = "QUEUED"
        feeds.observe(7, RunQueued(run_id="r1"))
        pushed = [await asyncio.wait_for(q.get(), 1) for q in (a, b, c)]
        assert [p["status"] for p in pushed] == ["QUEUED"] * 3
        assert runs.reads["r1"] == 2 and runs.asked_visible == [7]
        # Events of a run nobody watches read nothing.
        feeds.observe(8, StopRequested(run_id="r2"))
        await asyncio.sleep(0.05)
        assert runs.reads == {"r1": 2, "r2": 0}
        # A burst of events is one read (at most one per interval).
        for seq in range(9, 30):
            feeds.observe(seq, StopRequested(run_id="r1"))
        await asyncio.sleep(0.1)
        assert runs.reads["r1"] <= 4
        # The run ends: pages get the final state and the feed stops reading.
        runs.status["r1"] = "COMPLETED"
        feeds.observe(31, StopRequested(run_id="r1"))
        while (await asyncio.wait_for(a.get(), 1))["status"] != "COMPLETED":
            pass
        reads = runs.reads["r1"]
        feeds.observe(32, StopRequested(run_id="r1"))
        await asyncio.sleep(0.05)
        assert runs.reads["r1"] == reads
    assert feeds.feeds == {}  # the last page gone, the feed goes too


async def test_a_page_opened_later_gets_the_current_read_at_once() -> None:
    runs = Runs()
    feeds = live(runs)
    async with feeds.watch("r2") as first:
        await asyncio.wait_for(first.get(), 1)
        async with feeds.watch("r2") as later:
            assert (await asyncio.wait_for(later.get(), 1))["status"] == "PENDING"
        assert runs.reads["r2"] == 1
