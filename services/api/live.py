"""Live run pages pushed from the event stream.

The API process folds CALLMETER_EVENTS through one subscription (the
projector's); every folded event of a run that someone watches marks that run's
feed changed. A feed reads the run once per change, after the read models show
the change, and hands the result to every page watching the run: N open pages
of a run cost one read per change, not N reads per second. Quality figures and
progress move without events (samples go to another stream), so a live run's
feed also reads every `refresh_s` while someone watches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from callmeter_events import Event

log = logging.getLogger(__name__)

Load = Callable[[str], Awaitable[Any]]  # run id -> what the pages render, or None
Visible = Callable[[int, float], Awaitable[bool]]  # (seq, timeout) -> read models show it


class Feed:
    """One watched run: the newest read of it, sent to every watcher's queue."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.watchers: set[asyncio.Queue[Any]] = set()
        self.changed_at = 0  # highest sequence of an event of the run not read yet
        self.changed = asyncio.Event()
        self.latest: Any = None
        self.task: asyncio.Task[None] | None = None

    def send(self, value: Any) -> None:
        self.latest = value
        for queue in self.watchers:
            if queue.full():  # a page still rendering the last one gets the newest
                queue.get_nowait()
            queue.put_nowait(value)


class LiveRuns:
    def __init__(
        self,
        load: Load,
        visible: Visible,
        is_live: Callable[[Any], bool],
        interval_s: float = 1.0,
        refresh_s: float = 5.0,
        visible_wait_s: float = 10.0,
    ) -> None:
        self.load = load
        self.visible = visible
        self.is_live = is_live
        self.interval_s = interval_s  # at most one read per interval per run
        self.refresh_s = refresh_s
        self.visible_wait_s = visible_wait_s
        self.feeds: dict[str, Feed] = {}
        self.loads = 0  # reads done, for tests and the curious

    def observe(self, seq: int, event: Event) -> None:
        """Told of every folded event (projector listener)."""
        feed = self.feeds.get(getattr(event, "run_id", None) or "")
        if feed is not None:
            feed.changed_at = max(feed.changed_at, seq)
            feed.changed.set()

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str) -> AsyncIterator[asyncio.Queue[Any]]:
        """A queue of the run's reads: the current one at once, then one per change."""
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = Feed(run_id)
            feed.task = asyncio.create_task(self._run(feed))
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        if feed.latest is not None:
            queue.put_nowait(feed.latest)
        feed.watchers.add(queue)
        try:
            yield queue
        finally:
            feed.watchers.discard(queue)
            if not feed.watchers:
                self.feeds.pop(run_id, None)
                if feed.task is not None:
                    feed.task.cancel()

    async def _run(self, feed: Feed) -> None:
        while True:
            seen = feed.changed_at
            feed.changed.clear()
            if seen and not await self.visible(seen, self.visible_wait_s):
                log.warning("run %s: read models not at %d yet; reading anyway", feed.run_id, seen)
            try:
                self.loads += 1
                value = await self.load(feed.run_id)
            except Exception:
                log.exception("reading live run %s", feed.run_id)
                value = feed.latest
            if value is not None:
                feed.send(value)
                if not self.is_live(value):
                    return  # finished: nothing more will change
            await asyncio.sleep(self.interval_s)
            if feed.changed_at == seen:  # nothing new during the pause: wait for it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.changed.wait(), self.refresh_s)
