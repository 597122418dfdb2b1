"""`callmeter users create|reset-password`: for scripts and for an installation
without a first administrator yet. Talks to NATS (the events) and PostgreSQL (to
end the user's sessions) directly, like `callmeter backup`: run it where the
platform's servers are reachable."""

from __future__ import annotations

import asyncio

import psycopg

from callmeter_common.bus import Bus
from callmeter_common.secrets_hash import hash_password
from callmeter_events import (
    ACCESS,
    AccessRole,
    Event,
    MembershipSet,
    OrganisationCreated,
    PasswordChanged,
    UserCreated,
)
from callmeter_projections.access import AccessState
from callmeter_storage import sessions

ACTOR = "cli"


class UsersError(Exception):
    """A clear reason the command did nothing."""


async def _state(bus: Bus) -> AccessState:
    state = AccessState()
    caught_up = asyncio.Event()

    async def on(seq: int, event: Event) -> None:
        state.apply(seq, event)

    sub = await bus.fold(ACCESS, 1, on, caught_up=caught_up)
    await asyncio.wait_for(caught_up.wait(), 30)
    await sub.unsubscribe()
    return state


async def _create(nats_url: str, username: str, password: str, org: str, role: AccessRole) -> None:
    password_hash = hash_password(password)
    bus = await Bus.connect(nats_url, "cli")
    try:
        await bus.ensure_streams([ACCESS])
        state = await _state(bus)
        if username in state.users:
            raise UsersError(f"user {username!r} exists already (reset-password changes it)")
        await bus.publish(UserCreated(actor=ACTOR, username=username, password_hash=password_hash))
        if org not in state.orgs:
            await bus.publish(OrganisationCreated(actor=ACTOR, org=org))
        await bus.publish(MembershipSet(actor=ACTOR, org=org, username=username, role=role))
    finally:
        await bus.close()


async def _reset(nats_url: str, database_url: str, username: str, password: str) -> None:
    password_hash = hash_password(password)
    bus = await Bus.connect(nats_url, "cli")
    try:
        if username not in (await _state(bus)).users:
            raise UsersError(f"no user {username!r}")
        event = PasswordChanged(actor=ACTOR, username=username, password_hash=password_hash)
        await bus.publish(event)
    finally:
        await bus.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        sessions.end_all(conn, username)


def create(nats_url: str, username: str, password: str, org: str, role: AccessRole) -> None:
    asyncio.run(_create(nats_url, username, password, org, role))


def reset_password(nats_url: str, database_url: str, username: str, password: str) -> None:
    asyncio.run(_reset(nats_url, database_url, username, password))
