"""Dispatcher service wiring: bus + reconciler around the pure dispatch rules."""

from __future__ import annotations

import asyncio
import functools

from callmeter_common.reconciler import serve_reconciler
from callmeter_common.runtime import run_service

from .dispatch import Timing, decide
from .settings import DispatcherSettings


async def serve(stop: asyncio.Event) -> None:
    settings = DispatcherSettings()
    timing = Timing(
        settings.heartbeat_s,
        settings.missed_heartbeats,
        settings.receiver_wait_s,
        settings.stop_timeout_s,
    )
    await serve_reconciler(
        "dispatcher", settings.nats_url, functools.partial(decide, timing=timing), stop
    )


def main() -> None:
    run_service("dispatcher", serve)


if __name__ == "__main__":
    main()
