"""What the routes do, shared by the JSON and HTML routers: publish, wait, read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from callmeter_common import wav
from callmeter_events import (
    TERMINAL_STATUSES,
    Event,
    RunCreated,
    StopRequested,
    TestDefinition,
    TestDeleted,
    TestSaved,
)
from callmeter_storage import results, retention
from callmeter_storage.readmodels import RUNS
from callmeter_storage.resources import audio_projects

from . import resources, secret_store
from .audit import audit
from .deps import Platform
from .errors import ApiError
from .views import run_view

T = TypeVar("T")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


async def publish_and_wait(p: Platform, event: Event) -> None:
    """Publish, then wait until the read models show it (read-your-writes): until the
    writer (this process or another) has stored the event's position."""
    seq = await p.bus.publish(event)
    if not await p.projector.wait_for(event, seq, p.settings.projection_wait_s):
        raise ApiError(503, "projection_lag", "saved, but the views are not updated yet; retry")


async def query(p: Platform, fn: Callable[..., T], *args: Any) -> T:
    """Run a read query on a pooled connection in a worker thread."""

    def run() -> T:
        with p.pool.connection() as conn:
            return fn(conn, *args)

    return await asyncio.to_thread(run)


async def get_test(p: Platform, test_id: str) -> dict[str, Any]:
    row = await query(p, results.test_row, test_id)
    if row is None:
        raise ApiError(404, "not_found", f"no test {test_id!r}", "test_id")
    return row


async def save_test(
    p: Platform, definition: TestDefinition, test_id: str | None = None, actor: str = ""
) -> str:
    for i, group in enumerate(definition.groups):
        if group.audio and group.audio not in wav.BUILTIN:
            # Only audio uploaded into the test's project: another's is as unknown.
            if definition.project not in await query(p, audio_projects, group.audio):
                field = f"groups.{i}.audio"
                message = (
                    f"{field}: no uploaded audio {group.audio} in project "
                    f"{definition.project!r} (POST /api/v1/audio?project=... first)"
                )
                raise ApiError(422, "validation_error", message, field)
    await resources.check_references(p, definition)
    action = "test_edited" if test_id else "test_created"
    test_id = test_id or new_id()
    definition = await secret_store.store_secrets(p, test_id, definition)
    await publish_and_wait(p, TestSaved(test_id=test_id, definition=definition))
    await secret_store.shred_unused(p, test_id, definition)
    await audit(p, actor, action, definition.project, test_id)
    return test_id


async def duplicate_test(p: Platform, test_id: str, actor: str = "") -> str:
    """A copy under a new id, named so it is told apart in the list."""
    test = await get_test(p, test_id)
    definition = dict(test["definition"])
    definition["name"] = f"{definition['name']} (copy)"[:200]
    return await save_test(p, TestDefinition.model_validate(definition), actor=actor)


async def delete_test(p: Platform, test_id: str, actor: str = "") -> None:
    test = await get_test(p, test_id)
    await publish_and_wait(p, TestDeleted(test_id=test_id))
    await secret_store.shred_unused(p, test_id, None)  # crypto-shredding
    await audit(p, actor, "test_deleted", test["definition"]["project"], test_id)


async def start_run(p: Platform, test_id: str, actor: str = "") -> str:
    test = await get_test(p, test_id)
    run_id = new_id()
    definition = await resources.resolve(p, TestDefinition.model_validate(test["definition"]))
    await publish_and_wait(p, RunCreated(run_id=run_id, test_id=test_id, definition=definition))
    await audit(p, actor, "run_started", definition.project, run_id)
    return run_id


async def stop_run(p: Platform, run_id: str, actor: str = "") -> None:
    view = await get_run(p, run_id)
    if view["status"] in TERMINAL_STATUSES:
        raise ApiError(409, "run_finished", f"run {run_id} is already {view['status']}", "run_id")
    await publish_and_wait(p, StopRequested(run_id=run_id))
    await audit(p, actor, "run_stopped", view["definition"]["project"], run_id)


async def delete_run(p: Platform, run_id: str, actor: str = "") -> dict[str, int]:
    """Remove a finished run from every stream and table; returns rows deleted per table."""
    view = await get_run(p, run_id)
    if view["status"] not in ("COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"):
        raise ApiError(
            409,
            "run_active",
            f"run {run_id} is {view['status']}: stop it and delete it once it has finished",
            "run_id",
        )
    if view["status"] != "CANNOT_RUN_FOR_NOW" and view.get("evaluation") is None:
        raise ApiError(
            409,
            "run_evaluating",
            f"run {run_id} is still being evaluated; retry in a few seconds",
            "run_id",
        )
    await retention.purge_run_streams(p.bus, run_id)  # first: nothing can fold it back
    p.projector.models.runs.forget(run_id)
    # A write of this process holding the run's old rows lands before the delete.
    folded = p.projector.models.positions[RUNS]
    await p.projector.wait_for_position(RUNS, folded, p.settings.projection_wait_s)
    deleted = await retention.delete_rows(p.settings.database_url, run_id)
    await audit(p, actor, "run_deleted", view["definition"]["project"], run_id)
    return deleted


async def get_run(p: Platform, run_id: str) -> dict[str, Any]:
    def read(conn: Any) -> tuple[Any, ...] | None:
        run = results.run_row(conn, run_id)
        if run is None:
            return None
        return run, results.endpoint_rows(conn, run_id), results.summary(conn, run_id)

    found = await query(p, read)
    if found is None:
        raise ApiError(404, "not_found", f"no run {run_id!r}", "run_id")
    return run_view(*found)
