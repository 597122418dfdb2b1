"""Worker service wiring: the supervisor's consumer, heartbeats and host watchdog."""

from __future__ import annotations

import asyncio
import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

from callmeter_common.bus import Bus
from callmeter_common.runtime import run_service
from callmeter_events import EVENTS, assignments_for_worker, stop_signals, waits_for_worker

from .handlers import Supervisor
from .settings import WorkerSettings


def host_log_file(settings: WorkerSettings) -> Path:
    """Send the `callmeter.host` logger (hosts' stderr) to its own rotated file only."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in settings.worker_id)
    path = settings.data_dir / f"hosts-{safe}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=settings.host_log_bytes, backupCount=settings.host_log_backups
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("callmeter.host")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not into the worker's own log
    return path


async def serve(stop: asyncio.Event, settings: WorkerSettings | None = None) -> None:
    """One worker until `stop`; several can share a process (bench/fleet.py's simulated
    fleet), each with its own settings and connection."""
    settings = settings or WorkerSettings()
    host_log_file(settings)
    bus = await Bus.connect(settings.nats_url, f"worker-{settings.worker_id}")
    await bus.ensure_streams()
    supervisor = Supervisor(bus, settings)
    durable = "worker-" + "".join(
        c if c.isalnum() or c in "-_" else "_" for c in settings.worker_id
    )
    filters = [
        assignments_for_worker(settings.worker_id),
        waits_for_worker(settings.worker_id),
        stop_signals(),
    ]
    tasks = [
        asyncio.create_task(bus.pull_loop(EVENTS, durable, filters, supervisor.handle_batch, stop)),
        asyncio.create_task(supervisor.heartbeats(stop)),
        asyncio.create_task(supervisor.pool.watch(stop)),
        asyncio.create_task(supervisor.watch_health(stop)),
    ]
    try:
        await stop.wait()
    finally:
        await supervisor.pool.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await supervisor.samples.flush()  # the last batched samples
        supervisor.close()
        await bus.close()


def main() -> None:
    run_service("worker", serve)


if __name__ == "__main__":
    main()
