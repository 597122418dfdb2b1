"""metrics-ingest wiring: migrate, then durable pull consumers on CALLMETER_METRICS
(samples), CALLMETER_TRACES (SIP messages) and the call records of CALLMETER_EVENTS, the per-run watermark (watermark.py),
and the hourly upkeep (partitions, retention of whole runs)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from callmeter_common.bus import Bus
from callmeter_common.runtime import run_service
from callmeter_events import METRICS, TRACES
from callmeter_events.streams import INGEST_DURABLE
from callmeter_storage.migrations import migrate
from callmeter_storage.retention import sweep
from callmeter_storage.settings import StorageSettings

from .calls import DURABLE as CALL_DURABLE
from .calls import consume_call_records
from .consumer import consume
from .handlers import Ingest
from .settings import IngestSettings
from .traces import DURABLE as TRACE_DURABLE
from .traces import consume_traces
from .watermark import Watermarks

log = logging.getLogger(__name__)


async def serve(stop: asyncio.Event) -> None:
    settings = IngestSettings()
    # migrate() also does the start-up upkeep: partitions ahead, retention.
    mode = await asyncio.to_thread(migrate, settings.database_url)
    bus = await Bus.connect(settings.nats_url, "metrics-ingest")
    await bus.ensure_streams()
    ingest = Ingest(bus, settings.database_url, settings.retry_s, mode, settings.fold_every_s)
    upkeep = asyncio.create_task(_hourly_upkeep(bus, settings.database_url, stop))
    traces = asyncio.create_task(
        consume_traces(bus, settings.database_url, stop, settings.trickle_linger_s)
    )
    records = asyncio.create_task(
        consume_call_records(bus, settings.database_url, stop, settings.trickle_linger_s)
    )
    watermarks = asyncio.create_task(
        Watermarks(
            bus,
            settings.database_url,
            {METRICS.name: INGEST_DURABLE, TRACES.name: TRACE_DURABLE},
            records=CALL_DURABLE,
        ).serve(stop)
    )
    try:
        await consume(
            bus,
            ingest,
            stop,
            settings.batch_size,
            settings.max_rows,
            settings.min_rows,
            settings.linger_s,
        )
    finally:
        upkeep.cancel()
        watermarks.cancel()  # a run being marked is not acked: it comes back to an ingest
        traces.cancel()
        records.cancel()
        for task in (watermarks, traces, records):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.close()


async def _hourly_upkeep(bus: Bus, database_url: str, stop: asyncio.Event) -> None:
    """At start and hourly: remove runs past the retention, keep partitions ahead."""
    first = True
    while not stop.is_set():
        if not first:
            try:
                await asyncio.wait_for(stop.wait(), timeout=3600)
                return
            except TimeoutError:
                pass
        try:
            if not first:
                await asyncio.to_thread(migrate, database_url)
            settings = StorageSettings()
            await sweep(
                bus, database_url, settings.retention_days, probe_days=settings.probe_retention_days
            )
        except Exception:  # noqa: BLE001 - the database may be down; next hour
            log.exception("storage upkeep failed")
        first = False


def main() -> None:
    # Ingest makes millions of short-lived containers (decoded JSON, rows) and keeps
    # no reference cycles worth collecting; with the default thresholds the cyclic
    # GC took a quarter of decode time (bench/ingest.py). Collect far less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    run_service("metrics-ingest", serve)


if __name__ == "__main__":
    main()
