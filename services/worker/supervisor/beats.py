"""The worker's heartbeats, from a thread with its own event loop and NATS connection.

At 64 calls/s (bench/cps.py) the supervisor's loop, runnable but starved of CPU while
dozens of endpoint hosts started, made its heartbeats 5-13 s apart: each waited behind
hundreds of host messages in the loop's queue, and the dispatcher declared a working
worker lost, ending every endpoint it ran. A thread that sleeps between beats is
scheduled promptly when it wakes and waits for no queue. It beats only while the
supervisor's loop has ticked (`touch`) within `wedged_s`: a loop that is late keeps its
worker, a loop that is stuck loses it (the dispatcher declares it lost one missed-beat
limit after the beats stop); a process that dies takes the thread with it. What a beat
reports of the supervisor's state comes with each `touch`, computed on its loop: this
thread never reads structures the loop is changing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from callmeter_common.bus import TRANSIENT_PUBLISH_ERRORS, Bus
from callmeter_events import WorkerHeartbeat

log = logging.getLogger(__name__)
Figures = TypeVar("Figures")


class HeartbeatThread(Generic[Figures]):
    def __init__(
        self,
        nats_url: str,
        service: str,
        make_beat: Callable[[Figures], WorkerHeartbeat],
        figures: Figures,
        interval_s: float,
        wedged_s: float,
    ) -> None:
        self.nats_url, self.service = nats_url, service
        self.make_beat = make_beat  # called on this thread, with the loop's last figures
        self.figures = figures  # replaced whole by touch(): one reference, never mutated
        self.interval_s, self.wedged_s = interval_s, wedged_s
        self.last_tick = time.monotonic()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def touch(self, figures: Figures) -> None:
        """The supervisor's loop is running (called from it every interval), and what
        its beats should report now."""
        self.figures = figures
        self.last_tick = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._beat())
        except Exception:  # the dispatcher will see the silence; say why here
            log.exception("heartbeat thread ended")

    async def _beat(self) -> None:
        bus = await Bus.connect(self.nats_url, self.service)
        try:
            due = time.monotonic()
            while not self._stop.is_set():
                if time.monotonic() - self.last_tick <= self.wedged_s:
                    await self._send(bus)
                else:
                    log.error("supervisor loop stuck %.0f s: no heartbeat", self.wedged_s)
                due = max(due + self.interval_s, time.monotonic())  # late: no burst
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        finally:
            await bus.close()

    async def _send(self, bus: Bus) -> None:
        try:
            await bus.publish(self.make_beat(self.figures), patience_s=self.interval_s * 3)
            self.sent += 1
        except TRANSIENT_PUBLISH_ERRORS as exc:  # the next beat tries again
            log.warning("heartbeat not published: %r", exc)
