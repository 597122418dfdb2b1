"""Scheduler service wiring: bus + reconciler around the pure lifecycle."""

from __future__ import annotations

import asyncio
import functools

from callmeter_common.reconciler import serve_reconciler
from callmeter_common.runtime import run_service

from .lifecycle import Limits, decide
from .settings import SchedulerSettings


async def serve(stop: asyncio.Event) -> None:
    settings = SchedulerSettings()
    limits = Limits(
        max_endpoints_per_run=settings.max_endpoints_per_run,
        max_concurrent_runs=settings.max_concurrent_runs,
        max_concurrent_endpoints=settings.max_concurrent_endpoints,
        grace_s=settings.grace_s,
        receiver_wait_s=settings.receiver_wait_s,
        max_concurrent_runs_per_project=settings.max_concurrent_runs_per_project,
    )
    await serve_reconciler(
        "scheduler", settings.nats_url, functools.partial(decide, limits=limits), stop
    )


def main() -> None:
    run_service("scheduler", serve)


if __name__ == "__main__":
    main()
