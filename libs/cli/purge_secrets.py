"""`callmeter secrets purge-clear`: find and purge events written before the secret store.

Version 1 of TestSaved, RunCreated and EndpointAssigned held SIP passwords and webhook
secrets in clear. Decoding drops them (codec upcasters), but the stored messages keep
them until purged:
- a test re-saved since (its newest TestSaved is v2): its older TestSaved messages are
  purged (JetStream purge by subject, keeping the newest);
- a test deleted and not saved again: all its events are purged;
- a test not re-saved yet: listed; save it again with its passwords, then rerun this;
- a run: listed; delete it (`DELETE /api/v1/runs/<id>`), which purges its events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext, api

from callmeter_events import EVENTS

LEGACY_SUBJECTS = (
    "callmeter.test.*.saved",
    "callmeter.test.*.deleted",
    "callmeter.run.*.status.created",
    "callmeter.run.*.worker.*.assigned",
)


@dataclass
class Found:
    tests: dict[str, bool] = field(default_factory=dict)  # test with clear secrets -> purgeable
    runs: set[str] = field(default_factory=set)  # runs with clear secrets


def clear_secret(payload: dict[str, Any]) -> bool:
    """A stored v1 payload that still holds a secret in clear."""
    if int(payload.get("schema_version", 1)) != 1:
        return False
    if payload.get("type") == "EndpointAssigned":
        return bool(((payload.get("config") or {}).get("account") or {}).get("password"))
    definition = payload.get("definition") or {}
    accounts = [a for g in definition.get("groups") or [] for a in g.get("accounts") or []]
    hooks = definition.get("webhooks") or []
    return any(a.get("password") for a in accounts) or any(w.get("secret") for w in hooks)


async def _payloads(js: JetStreamContext, subject: str) -> list[dict[str, Any]]:
    info = await js.stream_info(EVENTS.name)
    if not info.state.messages:
        return []
    sub = await js.subscribe(
        subject,
        stream=EVENTS.name,
        ordered_consumer=True,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
    )
    out: list[dict[str, Any]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except TimeoutError:
                return out
            out.append(json.loads(msg.data))
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await sub.unsubscribe()


async def find(js: JetStreamContext) -> Found:
    found = Found()
    deleted: set[str] = set()
    newest: dict[str, int] = {}  # test -> schema version of its newest TestSaved
    for subject in LEGACY_SUBJECTS:
        for payload in await _payloads(js, subject):
            kind = payload.get("type")
            if kind == "TestDeleted":
                deleted.add(payload["test_id"])
            elif kind == "TestSaved":
                newest[payload["test_id"]] = int(payload.get("schema_version", 1))
                if clear_secret(payload):
                    found.tests[payload["test_id"]] = False
            elif clear_secret(payload):
                found.runs.add(payload["run_id"])
    for test_id in found.tests:
        found.tests[test_id] = test_id in deleted or newest[test_id] > 1
    return found


async def purge(js: JetStreamContext, found: Found) -> list[str]:
    """Purge the purgeable tests' old TestSaved messages; returns the tests purged."""
    purged = []
    for test_id, purgeable in sorted(found.tests.items()):
        if not purgeable:
            continue
        subject = f"callmeter.test.{test_id}.saved"
        last = json.loads((await js.get_last_msg(EVENTS.name, subject)).data or b"{}")
        if int(last.get("schema_version", 1)) > 1:  # saved again since: keep that version
            await js.purge_stream(EVENTS.name, subject=subject, keep=1)
        else:  # deleted, never saved again: every event of the test goes
            await js.purge_stream(EVENTS.name, subject=f"callmeter.test.{test_id}.>")
        purged.append(test_id)
    return purged
