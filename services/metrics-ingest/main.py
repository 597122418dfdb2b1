"""metrics-ingest wiring: migrate, then a durable pull consumer on CALLMETER_METRICS and
the per-run watermark (watermark.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from callmeter_common.bus import Bus
from callmeter_common.runtime import run_service
from callmeter_storage.migrations import migrate

from .consumer import DURABLE, consume
from .handlers import Ingest
from .settings import IngestSettings
from .watermark import Watermarks

log = logging.getLogger(__name__)


async def serve(stop: asyncio.Event) -> None:
    settings = IngestSettings()
    # migrate() also does the start-up upkeep: partitions ahead, retention.
    mode = await asyncio.to_thread(migrate, settings.database_url)
    bus = await Bus.connect(settings.nats_url, "metrics-ingest")
    await bus.ensure_streams()
    ingest = Ingest(bus, settings.database_url, settings.retry_s, mode, settings.fold_every_s)
    upkeep = asyncio.create_task(_hourly_upkeep(settings.database_url, stop))
    watermarks = asyncio.create_task(Watermarks(bus, settings.database_url, DURABLE).serve(stop))
    try:
        await consume(
            bus, ingest, stop, settings.batch_size,
            settings.max_rows, settings.min_rows, settings.linger_s,
        )  # fmt: skip
    finally:
        upkeep.cancel()
        watermarks.cancel()  # a run being marked is not acked: it comes back to an ingest
        with contextlib.suppress(asyncio.CancelledError):
            await watermarks
        await bus.close()


async def _hourly_upkeep(database_url: str, stop: asyncio.Event) -> None:
    """Re-run the start-up upkeep hourly so a long-lived ingest keeps partitions ahead."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=3600)
        except TimeoutError:
            try:
                await asyncio.to_thread(migrate, database_url)
            except Exception:  # noqa: BLE001 - the database may be down; next hour
                log.exception("storage upkeep failed")


def main() -> None:
    # Ingest makes millions of short-lived containers (decoded JSON, rows) and keeps
    # no reference cycles worth collecting; with the default thresholds the cyclic
    # GC took a quarter of decode time (bench/ingest.py). Collect far less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    run_service("metrics-ingest", serve)


if __name__ == "__main__":
    main()
