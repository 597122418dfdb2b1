"""Removing whole runs: the user's delete and the retention setting share one path.

A run goes from the streams first (its subjects purged from every stream, so no
fold can bring its rows back), then from every table in one transaction. Only
finished runs are removed: a run in flight still has services writing for it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg

from callmeter_common.bus import Bus
from callmeter_events.subjects import everything_of_run

from .deletion import delete_run_rows, expired_runs

log = logging.getLogger(__name__)


async def purge_run_streams(bus: Bus, run_id: str) -> None:
    for stream, filters in everything_of_run(run_id).items():
        for subject in filters:
            await bus.js.purge_stream(stream, subject=subject)


async def delete_rows(database_url: str, run_id: str) -> dict[str, int]:
    def rows() -> dict[str, int]:
        # autocommit: refreshing TimescaleDB's aggregates cannot run in a transaction
        with psycopg.connect(database_url, autocommit=True) as conn:
            return delete_run_rows(conn, run_id)

    return await asyncio.to_thread(rows)


async def delete_run(bus: Bus, database_url: str, run_id: str) -> dict[str, int]:
    """Everything of a finished run, streams then rows; returns rows deleted per table."""
    await purge_run_streams(bus, run_id)
    return await delete_rows(database_url, run_id)


async def sweep(
    bus: Bus,
    database_url: str,
    retention_days: int,
    now: datetime | None = None,
    probe_days: int = 0,
) -> list[str]:
    """Delete the runs finished more than `retention_days` ago, and the judged probe
    executions' runs more than `probe_days` ago (0 keeps them: retention_days alone)."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    probe_cutoff = now - timedelta(days=probe_days)

    def expired() -> list[str]:
        with psycopg.connect(database_url) as conn:
            runs = expired_runs(conn, cutoff) if retention_days > 0 else []
            probes = expired_runs(conn, probe_cutoff, probes_only=True) if probe_days > 0 else []
        seen = set(runs)
        return runs + [r for r in probes if r not in seen]

    run_ids = await asyncio.to_thread(expired)
    for run_id in run_ids:
        await delete_run(bus, database_url, run_id)
    if run_ids:
        log.info("retention: deleted %d finished runs", len(run_ids))
    return run_ids
