"""Worker service wiring: the supervisor's consumer, heartbeats and host watchdog."""

from __future__ import annotations

import asyncio

from callmeter_common.bus import Bus
from callmeter_common.runtime import run_service
from callmeter_events import EVENTS, assignments_for_worker, stop_signals

from .handlers import Supervisor
from .settings import WorkerSettings


async def serve(stop: asyncio.Event) -> None:
    settings = WorkerSettings()
    bus = await Bus.connect(settings.nats_url, f"worker-{settings.worker_id}")
    await bus.ensure_streams()
    supervisor = Supervisor(bus, settings)
    durable = "worker-" + "".join(
        c if c.isalnum() or c in "-_" else "_" for c in settings.worker_id
    )
    filters = [assignments_for_worker(settings.worker_id), stop_signals()]
    tasks = [
        asyncio.create_task(bus.pull_loop(EVENTS, durable, filters, supervisor.handle_batch, stop)),
        asyncio.create_task(supervisor.heartbeats(stop)),
        asyncio.create_task(supervisor.pool.watch(stop)),
    ]
    try:
        await stop.wait()
    finally:
        await supervisor.pool.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await supervisor.samples.flush()  # the last batched samples
        await bus.close()


def main() -> None:
    run_service("worker", serve)


if __name__ == "__main__":
    main()
