"""How every service process starts and stops: logging, signals, one coroutine."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from . import telemetry

Serve = Callable[[asyncio.Event], Awaitable[None]]


def setup_logging(service: str) -> None:
    """Log lines carry the service and the run being handled; telemetry per OTEL_ vars."""
    handler = logging.StreamHandler()
    handler.addFilter(telemetry.RunIdFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s {service} %(levelname)s run=%(run_id)s %(name)s: %(message)s"
        )
    )
    logging.basicConfig(level=os.environ.get("CALLMETER_LOG_LEVEL", "INFO"), handlers=[handler])
    telemetry.setup(service)


def dump_tasks() -> None:
    """Log the stack of every asyncio task (operators' answer to 'why is it stuck?')."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=out)
    logging.getLogger("callmeter.tasks").warning("asyncio tasks:\n%s", out.getvalue())


def run_service(service: str, serve: Serve) -> None:
    """Run `serve(stop)` until SIGINT/SIGTERM sets `stop` (then it drains and returns)."""
    setup_logging(service)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)  # `kill -USR1 <pid>`: what is it doing?
        await serve(stop)

    asyncio.run(main())
