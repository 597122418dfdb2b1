"""metrics-ingest wiring: migrate, then a durable pull consumer on CALLMETER_METRICS."""

from __future__ import annotations

import asyncio

from callmeter_common.bus import Bus
from callmeter_common.runtime import run_service
from callmeter_events import METRICS
from callmeter_storage.migrations import migrate

from .handlers import Ingest
from .settings import IngestSettings


async def serve(stop: asyncio.Event) -> None:
    settings = IngestSettings()
    await asyncio.to_thread(migrate, settings.database_url)
    bus = await Bus.connect(settings.nats_url, "metrics-ingest")
    await bus.ensure_streams()
    ingest = Ingest(bus, settings.database_url, settings.retry_s)
    try:
        await bus.pull_loop(
            METRICS, "metrics-ingest", ["callmeter.metrics.>"], ingest.handle_batch, stop,
            batch=settings.batch_size, max_deliver=-1, ack_wait_s=30,
        )  # fmt: skip
    finally:
        await bus.close()


def main() -> None:
    run_service("metrics-ingest", serve)


if __name__ == "__main__":
    main()
