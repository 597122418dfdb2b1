"""Dispatcher service wiring: bus + reconciler around the pure dispatch rules."""

from __future__ import annotations

import asyncio
import functools

from callmeter_common.bus import Bus
from callmeter_common.reconciler import Reconciler
from callmeter_common.runtime import run_service

from .dispatch import Timing, decide
from .settings import DispatcherSettings


async def serve(stop: asyncio.Event) -> None:
    settings = DispatcherSettings()
    timing = Timing(
        settings.heartbeat_s, settings.missed_heartbeats, settings.receiver_wait_s,
        settings.stop_timeout_s,
    )  # fmt: skip
    bus = await Bus.connect(settings.nats_url, "dispatcher")
    await bus.ensure_streams()
    try:
        await Reconciler(bus, functools.partial(decide, timing=timing)).run(stop)
    finally:
        await bus.close()


def main() -> None:
    run_service("dispatcher", serve)


if __name__ == "__main__":
    main()
