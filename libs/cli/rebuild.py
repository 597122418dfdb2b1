"""`callmeter projections rebuild`: drop the read models and fold them again from the log."""

from __future__ import annotations

import asyncio

import psycopg

from callmeter_common.bus import Bus
from callmeter_events import EVENTS, Event
from callmeter_storage.migrations import migrate
from callmeter_storage.readmodels import ReadModels, Touched, drop_views


async def fold_all(nats_url: str) -> tuple[ReadModels, list[Touched]]:
    """Fold every event of CALLMETER_EVENTS as it is now."""
    bus = await Bus.connect(nats_url, "rebuild")
    models, touched = ReadModels(), []
    try:
        done = asyncio.Event()

        async def on_event(seq: int, event: Event) -> None:
            touched.extend(models.fold(seq, event))

        sub = await bus.fold(EVENTS, 1, on_event, caught_up=done)
        await done.wait()
        await sub.unsubscribe()
    finally:
        await bus.close()
    return models, touched


def rebuild(nats_url: str, database_url: str) -> int:
    """Returns the stream position the rebuilt views reflect."""
    migrate(database_url)
    models, touched = asyncio.run(fold_all(nats_url))
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        # One transaction: readers never see the views empty, and the live writer
        # waits on the emptied tables, then finds the position it must pass.
        drop_views(conn)
        models.write(conn, touched)
    return models.position
