"""Endpoint state folded from CALLMETER_EVENTS: one frozen state per endpoint of a run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import singledispatch
from typing import TypeVar

from callmeter_events import (
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    EndpointAssigned,
    EndpointFinished,
    EndpointPhaseChanged,
    EndpointRegistered,
    Event,
    Phase,
    RegistrationFailed,
    SpeechQualityMeasured,
    TestDefinition,
    endpoint_id,
)

S = TypeVar("S")


def evolve(state: S, **changes: object) -> S:
    """A copy of a frozen state with some fields changed: `dataclasses.replace` without
    its per-call field introspection, which was 60 % of the fold's time (bench/dispatch.py).
    States here have no __post_init__, InitVar or slots, so copying __dict__ is the same.
    """
    new = object.__new__(type(state))
    new.__dict__.update(state.__dict__, **changes)  # type: ignore[attr-defined]
    return new


@dataclass(frozen=True)
class EndpointState:
    run_id: str
    endpoint_id: str
    group: str
    role: str
    phase: str | None = None
    outcome: str | None = None
    reason: str = ""
    sip_code: int | None = None
    worker_id: str | None = None
    planned_worker: str | None = None
    contact_uri: str | None = None
    target_uri: str | None = None
    codec: str | None = None
    time_to_register_ms: float | None = None
    time_to_trying_ms: float | None = None
    time_to_ringing_ms: float | None = None
    post_dial_delay_ms: float | None = None
    call_setup_ms: float | None = None
    call_duration_s: float | None = None
    finished_at: datetime | None = None
    # PESQ on a sampled receiver (SpeechQualityMeasured); error says why a sample has none
    mos_lqo: float | None = None
    mos_lqo_mode: str | None = None
    mos_lqo_error: str | None = None
    late_events: int = 0  # events that arrived after the endpoint had finished


def role_of(definition: TestDefinition, group_name: str) -> str:
    """caller when the group dials someone, receiver when called, else idle."""
    group = next(g for g in definition.groups if g.name == group_name)
    if group.calls or group.target_uri:
        return "caller"
    return "receiver" if group_name in definition.callee_groups() else "idle"


def initial_endpoints(run_id: str, definition: TestDefinition) -> list[EndpointState]:
    return [
        EndpointState(run_id, endpoint_id(g.name, i), g.name, role_of(definition, g.name))
        for g in definition.groups
        for i in range(1, g.endpoints + 1)
    ]


@singledispatch
def apply_endpoint(event: Event, ep: EndpointState) -> EndpointState:
    return ep


@apply_endpoint.register
def _(event: EndpointAssigned, ep: EndpointState) -> EndpointState:
    return evolve(ep, worker_id=event.worker_id, target_uri=event.config.target_uri)


@apply_endpoint.register
def _(event: EndpointPhaseChanged, ep: EndpointState) -> EndpointState:
    return evolve(ep, phase=event.phase)


@apply_endpoint.register
def _(event: EndpointRegistered, ep: EndpointState) -> EndpointState:
    return evolve(
        ep,
        phase=Phase.REGISTERED if ep.phase in (None, Phase.INITIALIZING) else ep.phase,
        contact_uri=event.contact_uri,
        time_to_register_ms=event.time_to_register_ms,
    )


@apply_endpoint.register
def _(event: RegistrationFailed, ep: EndpointState) -> EndpointState:
    return evolve(ep, sip_code=event.sip_code, reason=event.reason)


@apply_endpoint.register
def _(event: CallProgress, ep: EndpointState) -> EndpointState:
    return evolve(ep, sip_code=event.sip_code)


@apply_endpoint.register
def _(event: CallEstablished, ep: EndpointState) -> EndpointState:
    return evolve(
        ep,
        codec=event.codec,
        sip_code=200,
        time_to_trying_ms=event.time_to_trying_ms,
        time_to_ringing_ms=event.time_to_ringing_ms,
        post_dial_delay_ms=event.post_dial_delay_ms,
        call_setup_ms=event.call_setup_ms,
    )


@apply_endpoint.register
def _(event: CallFailed, ep: EndpointState) -> EndpointState:
    return evolve(ep, sip_code=event.sip_code, reason=event.reason)


@apply_endpoint.register
def _(event: SpeechQualityMeasured, ep: EndpointState) -> EndpointState:
    return evolve(
        ep, mos_lqo=event.mos_lqo, mos_lqo_mode=event.mode, mos_lqo_error=event.error or None
    )


@apply_endpoint.register
def _(event: CallEnded, ep: EndpointState) -> EndpointState:
    return evolve(ep, call_duration_s=event.duration_s)


@apply_endpoint.register
def _(event: EndpointFinished, ep: EndpointState) -> EndpointState:
    code = event.sip_code if event.sip_code is not None else ep.sip_code
    return evolve(
        ep,
        outcome=event.outcome,
        reason=event.reason or ep.reason,
        sip_code=code,
        finished_at=event.occurred_at,
        phase=Phase.CLOSED,
    )
