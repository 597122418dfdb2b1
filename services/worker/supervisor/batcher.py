"""Per-second samples out as MetricBatch messages: one per run every ~250 ms.

One message per sample made JetStream and metrics-ingest do per-message work
(headers, acks, a decode per sample) 168 times per endpoint per second. The
batcher holds a run's samples until `interval_s` after the first of them, or
until `max_samples`, then publishes them as one MetricBatch, so a sample is
live within a second whatever the load. The supervisor flushes a run when
one of its endpoints finishes (its last samples go before its end) and at
shutdown. The samples go in as the host made them (decoded, so checked, from
its line, and stamped with the endpoint's id): no other shape on the way.

Batch numbers start from the wall clock in milliseconds and count up, so a
restarted worker never reuses a number JetStream's duplicate window still
remembers (a run gets at most a few batches a second from one worker).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from callmeter_events import Event
from callmeter_events.metric_events import MetricBatch
from callmeter_vocabulary.sample import SampleHead

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[Any]]


class SampleBatcher:
    def __init__(
        self,
        publish: Publish,
        worker_id: str,
        interval_s: float = 0.25,
        max_samples: int = 500,  # ~250 kB of JSON: well under NATS's 1 MB max_payload
        retries: int = 5,
    ) -> None:
        self.publish = publish
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.retries = retries
        self.buffers: dict[str, list[SampleHead]] = {}
        self.seqs: dict[str, int] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, run_id: str, sample: SampleHead) -> None:
        """Buffer one sample of a run; its batch goes out within `interval_s` (needs a
        running loop)."""
        buffer = self.buffers.setdefault(run_id, [])
        buffer.append(sample)
        if len(buffer) >= self.max_samples:
            self._cut(run_id)
        elif len(buffer) == 1:
            loop = asyncio.get_running_loop()
            self.timers[run_id] = loop.call_later(self.interval_s, self._cut, run_id)

    async def flush(self, run_id: str | None = None) -> None:
        """Publish what is buffered (for one run, or all) and wait until it is published."""
        for run in [run_id] if run_id is not None else list(self.buffers):
            self._cut(run)
        while self.tasks:
            await asyncio.gather(*self.tasks)

    def _cut(self, run_id: str) -> None:
        timer = self.timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        samples = self.buffers.pop(run_id, [])
        if samples:
            batch = MetricBatch(
                run_id=run_id,
                worker_id=self.worker_id,
                seq=self._next_seq(run_id),
                samples=tuple(samples),
            )
            task = asyncio.ensure_future(self._publish(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _next_seq(self, run_id: str) -> int:
        seq = max(self.seqs.get(run_id, 0) + 1, int(time.time() * 1000))
        self.seqs[run_id] = seq
        return seq

    async def _publish(self, batch: MetricBatch) -> None:
        # The same event (same Nats-Msg-Id) on every attempt: a retry never duplicates.
        for attempt in range(self.retries):
            try:
                await self.publish(batch)
                return
            except Exception:  # noqa: BLE001 - NATS trouble: try again, then give up loudly
                if attempt == self.retries - 1:
                    log.exception("could not publish %s; its samples are lost", batch.msg_id())
                    return
                await asyncio.sleep(0.2 * 2**attempt)
