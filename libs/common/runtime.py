"""How every service process starts and stops: logging, signals, one coroutine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

Serve = Callable[[asyncio.Event], Awaitable[None]]


def setup_logging(service: str) -> None:
    logging.basicConfig(
        level=os.environ.get("CALLMETER_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )


def run_service(service: str, serve: Serve) -> None:
    """Run `serve(stop)` until SIGINT/SIGTERM sets `stop` (then it drains and returns)."""
    setup_logging(service)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    asyncio.run(main())
