"""The API's side of the secret store: secrets in, references out, before any event.

A definition as received may carry SIP passwords and webhook secrets in clear
(write-only fields). `store_secrets` moves each into the secret store, owned by
the test, and puts its reference in its place; a reference the definition
already holds must be one of the test's own (kept) or of another test of the
same project (a duplicate: copied, so deleting one test never takes the other's
secrets). After the save, `shred_unused` destroys the test's secrets the new
version no longer names; deleting the test destroys them all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callmeter_events import TestDefinition
from callmeter_storage import secrets

from .deps import Platform
from .errors import ApiError


def owner(test_id: str) -> str:
    return f"test:{test_id}"


def _fields(definition: TestDefinition) -> list[tuple[str, Any, str]]:
    """(field path, the account or webhook, secret kind) for every secret slot."""
    slots: list[tuple[str, Any, str]] = [
        (f"groups.{i}.accounts.{j}", a, "sip_password")
        for i, g in enumerate(definition.groups)
        for j, a in enumerate(g.accounts)
    ]
    return slots + [
        (f"webhooks.{i}", w, "webhook_secret") for i, w in enumerate(definition.webhooks)
    ]


def _resolve(p: Platform, test_id: str, definition: TestDefinition) -> list[str | None]:
    """In one transaction: store clear secrets, check and copy references; the
    reference of every secret slot, in `_fields` order."""
    master, mine = p.master_key, owner(test_id)
    new_refs: list[str | None] = []
    with p.pool.connection() as conn, conn.transaction():
        known = secrets.owners(conn, definition.secret_refs())
        for path, block, kind in _fields(definition):
            name = "password" if kind == "sip_password" else "secret"
            clear = getattr(block, name)
            ref = getattr(block, f"{name}_ref")
            if clear is not None:
                value = clear.get_secret_value()
                new_refs.append(
                    secrets.put(conn, master, definition.project, mine, kind, value)  # type: ignore[arg-type]
                    if value
                    else None
                )
            elif ref is None:
                new_refs.append(None)
            elif ref not in known or known[ref][0] != definition.project or known[ref][2] != kind:
                field = f"{path}.{name}_ref"
                raise ApiError(422, "validation_error", f"{field}: no such secret", field)
            elif known[ref][1] == mine:
                new_refs.append(ref)
            else:  # another test's secret (a duplicate): this test gets its own copy
                found = secrets.get(conn, master, ref)
                assert found is not None
                new_refs.append(
                    secrets.put(conn, master, definition.project, mine, kind, found.value)  # type: ignore[arg-type]
                )
    return new_refs


async def store_secrets(p: Platform, test_id: str, definition: TestDefinition) -> TestDefinition:
    """The definition with every secret a reference to the store."""
    if not definition.clear_secrets() and not definition.secret_refs():
        return definition
    it = iter(await asyncio.to_thread(_resolve, p, test_id, definition))
    groups = [
        g.model_copy(
            update={
                "accounts": [
                    a.model_copy(update={"password": None, "password_ref": next(it)})
                    for a in g.accounts
                ]
            }
        )
        for g in definition.groups
    ]
    hooks = [
        w.model_copy(update={"secret": None, "secret_ref": next(it)}) for w in definition.webhooks
    ]
    return definition.model_copy(update={"groups": groups, "webhooks": hooks})


async def shred_unused(p: Platform, test_id: str, definition: TestDefinition | None) -> int:
    """Destroy the test's secrets its definition (None: deleted) no longer names."""
    keep = set(definition.secret_refs()) if definition is not None else set()

    def run() -> int:
        with p.pool.connection() as conn:
            return secrets.shred_owned(conn, owner(test_id), keep)

    return await asyncio.to_thread(run)


async def reveal(p: Platform, ref: str) -> secrets.Secret | None:
    """A secret in clear, for the one use that needs it (signing, a worker's sealed copy)."""

    def run() -> secrets.Secret | None:
        with p.pool.connection() as conn:
            return secrets.get(conn, p.master_key, ref)

    return await asyncio.to_thread(run)
