"""Replay a finished run: republish its events (and samples) under a replay prefix.

The original subjects are kept after the prefix (`replay.<id>.callmeter.run.<id>...`),
so an integration written for the live subjects works on the replay by adding the
prefix to its subscription. Events are published with core NATS, outside the
streams, so the original run's views are never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, METRICS, decode, metrics_for_run, run_events


@dataclass(frozen=True)
class Recorded:
    subject: str
    data: bytes
    at: float  # seconds since the epoch, from the event's own time


async def read_run(bus: Bus, run_id: str, with_metrics: bool = True) -> list[Recorded]:
    """Every stored event of the run (and its samples), in the order they happened."""
    sources = [(EVENTS.name, run_events(run_id))]
    if with_metrics:
        sources.append((METRICS.name, metrics_for_run(run_id)))
    out: list[Recorded] = []
    for stream, subject in sources:
        out.extend(await _read_subject(bus, stream, subject))
    out.sort(key=lambda r: r.at)
    return out


async def _read_subject(bus: Bus, stream: str, subject: str) -> list[Recorded]:
    """All messages on `subject` as they are now, through a throwaway pull consumer."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=30
    )
    sub = await bus.js.pull_subscribe(subject, stream=stream, config=config)
    got: list[Recorded] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                break  # nothing (more) on this subject
            for msg in msgs:
                got.append(
                    Recorded(msg.subject, msg.data, decode(msg.data).occurred_at.timestamp())
                )
            if msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return got


async def replay(
    bus: Bus,
    recorded: list[Recorded],
    prefix: str,
    speed: float,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Publish `recorded` under `prefix`; speed 0 = as fast as possible. Returns seconds taken."""
    started = time.monotonic()
    origin = recorded[0].at if recorded else 0.0
    for i, rec in enumerate(recorded):
        if speed > 0:
            due = started + (rec.at - origin) / speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await bus.nc.publish(f"{prefix}.{rec.subject}", rec.data)
        if progress and i % 500 == 0:
            progress(i, len(recorded))
    await bus.nc.flush()
    return time.monotonic() - started
