"""`callmeter secrets purge-clear` against a real JetStream holding events written before
the secret store (v1: secrets in clear)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from callmeter_cli.purge_secrets import find, purge
from callmeter_common.bus import Bus
from callmeter_events import EVENTS
from callmeter_events import TestDeleted as Deleted
from callmeter_events import TestSaved as Saved

pytestmark = pytest.mark.integration


def _definition(secret: str) -> dict[str, object]:
    return {
        "name": "old",
        "duration_s": 1,
        "groups": [
            {"name": "A", "endpoints": 1, "accounts": [{"username": "u", "password": secret}]}
        ],
    }


def test_old_versions_of_resaved_and_deleted_tests_are_purged_the_rest_listed(nats_server):  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    resaved, pending, deleted, run = (f"{tag}{n}" for n in ("resaved", "pending", "deleted", "run"))

    async def scenario() -> tuple[object, list[str], dict[str, list[bytes]]]:
        bus = await Bus.connect(nats_server.url, "test-purge-secrets")
        try:
            await bus.ensure_streams()

            async def v1(subject: str, **payload: object) -> None:
                await bus.js.publish(subject, json.dumps(payload).encode(), stream=EVENTS.name)

            for test_id in (resaved, pending, deleted):
                await v1(
                    f"callmeter.test.{test_id}.saved",
                    type="TestSaved",
                    test_id=test_id,
                    occurred_at="2026-01-01T00:00:00Z",
                    definition=_definition(f"clear-{tag}"),
                )
            await v1(
                f"callmeter.run.{run}.status.created",
                type="RunCreated",
                run_id=run,
                test_id=pending,
                occurred_at="2026-01-01T00:00:00Z",
                definition=_definition(f"clear-{tag}"),
            )
            again = Saved.model_validate(
                {
                    "test_id": resaved,
                    "definition": {
                        **_definition(""),
                        "groups": [
                            {
                                "name": "A",
                                "endpoints": 1,
                                "accounts": [{"username": "u", "password_ref": "sec_" + "0" * 24}],
                            }
                        ],
                    },
                }
            )
            await bus.publish(again)
            await bus.publish(Deleted(test_id=deleted))
            found = await find(bus.js)
            purged = await purge(bus.js, found)
            left: dict[str, list[bytes]] = {}
            for test_id in (resaved, pending, deleted):
                sub = await bus.js.subscribe(
                    f"callmeter.test.{test_id}.>", stream=EVENTS.name, ordered_consumer=True
                )
                msgs = []
                while True:
                    try:
                        msgs.append((await sub.next_msg(timeout=1)).data)
                    except TimeoutError:
                        break
                await sub.unsubscribe()
                left[test_id] = msgs
            return found, purged, left
        finally:
            # The stream is shared by the session: leave no test or run for later modules.
            for test_id in (resaved, pending, deleted):
                await bus.js.purge_stream(EVENTS.name, subject=f"callmeter.test.{test_id}.>")
            await bus.js.purge_stream(EVENTS.name, subject=f"callmeter.run.{run}.>")
            await bus.close()

    found, purged, left = asyncio.run(scenario())
    mine = {t: p for t, p in found.tests.items() if t.startswith(tag)}  # type: ignore[attr-defined]
    assert mine == {resaved: True, pending: False, deleted: True}
    assert run in found.runs  # type: ignore[attr-defined]
    assert sorted(t for t in purged if t.startswith(tag)) == sorted([deleted, resaved])
    # The re-saved test keeps only its new version; the deleted one keeps no event;
    # the one not saved again keeps its old one (listed for the operator).
    assert len(left[resaved]) == 1
    assert b"clear-" not in left[resaved][0] and b"sec_" in left[resaved][0]
    assert left[deleted] == []
    assert len(left[pending]) == 1 and f"clear-{tag}".encode() in left[pending][0]
