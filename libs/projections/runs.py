"""Run and endpoint state folded from CALLMETER_EVENTS."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import singledispatch

from callmeter_events import (
    CallEnded, CallEstablished, CallFailed, CallProgress, EndpointAssigned, EndpointFinished,
    EndpointPhaseChanged, EndpointRegistered, Event, RegistrationFailed, RunCompleted, RunCreated,
    RunDispatching, RunFailed, RunQueued, RunRejected, RunStarted, RunStopping, StopRequested,
    TestDefinition, endpoint_id,
)  # fmt: skip

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"})


@dataclass(frozen=True)
class StatusChange:
    status: str
    at: datetime
    reason: str = ""


@dataclass(frozen=True)
class RunState:
    run_id: str
    test_id: str
    definition: TestDefinition
    status: str = "PENDING"
    reason: str = ""
    stopped: bool = False
    stop_requested: bool = False
    dispatched: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_ids: tuple[str, ...] = ()
    history: tuple[StatusChange, ...] = ()
    total_endpoints: int = 0
    finished_endpoints: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


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


def _to(run: RunState, status: str, at: datetime, reason: str = "", **changes: object) -> RunState:
    if run.terminal or run.status == status:
        return run  # terminal statuses are final; a repeated fact changes nothing
    history = (*run.history, StatusChange(status, at, reason))
    return replace(run, status=status, reason=reason or run.reason, history=history, **changes)  # type: ignore[arg-type]


@singledispatch
def apply_run(event: Event, run: RunState) -> RunState:
    return run


@apply_run.register
def _(event: RunQueued, run: RunState) -> RunState:
    return _to(run, "QUEUED", event.occurred_at) if run.status == "PENDING" else run


@apply_run.register
def _(event: RunRejected, run: RunState) -> RunState:
    return _to(
        run, "CANNOT_RUN_FOR_NOW", event.occurred_at, event.reason, finished_at=event.occurred_at
    )


@apply_run.register
def _(event: RunDispatching, run: RunState) -> RunState:
    if run.status not in ("PENDING", "QUEUED"):
        return run
    return replace(run, worker_ids=tuple(sorted(event.worker_ids)), dispatched=True)


@apply_run.register
def _(event: RunStarted, run: RunState) -> RunState:
    if run.status not in ("PENDING", "QUEUED"):
        return run
    return _to(run, "RUNNING", event.occurred_at, started_at=event.occurred_at)


@apply_run.register
def _(event: StopRequested, run: RunState) -> RunState:
    return run if run.terminal else replace(run, stop_requested=True)


@apply_run.register
def _(event: RunStopping, run: RunState) -> RunState:
    return _to(run, "STOPPING", event.occurred_at, "stop requested", stopped=True)


@apply_run.register
def _(event: RunCompleted, run: RunState) -> RunState:
    reason = "stopped by user" if event.stopped else ""
    return _to(run, "COMPLETED", event.occurred_at, reason, finished_at=event.occurred_at)


@apply_run.register
def _(event: RunFailed, run: RunState) -> RunState:
    return _to(run, "FAILED", event.occurred_at, event.reason, finished_at=event.occurred_at)


@singledispatch
def apply_endpoint(event: Event, ep: EndpointState) -> EndpointState:
    return ep


@apply_endpoint.register
def _(event: EndpointAssigned, ep: EndpointState) -> EndpointState:
    return replace(ep, worker_id=event.worker_id, target_uri=event.config.target_uri)


@apply_endpoint.register
def _(event: EndpointPhaseChanged, ep: EndpointState) -> EndpointState:
    return replace(ep, phase=event.phase)


@apply_endpoint.register
def _(event: EndpointRegistered, ep: EndpointState) -> EndpointState:
    return replace(
        ep, phase="REGISTERED" if ep.phase in (None, "INITIALIZING") else ep.phase,
        contact_uri=event.contact_uri, time_to_register_ms=event.time_to_register_ms,
    )  # fmt: skip


@apply_endpoint.register
def _(event: RegistrationFailed, ep: EndpointState) -> EndpointState:
    return replace(ep, sip_code=event.sip_code, reason=event.reason)


@apply_endpoint.register
def _(event: CallProgress, ep: EndpointState) -> EndpointState:
    return replace(ep, sip_code=event.sip_code)


@apply_endpoint.register
def _(event: CallEstablished, ep: EndpointState) -> EndpointState:
    return replace(
        ep, codec=event.codec, sip_code=200, time_to_trying_ms=event.time_to_trying_ms,
        time_to_ringing_ms=event.time_to_ringing_ms, post_dial_delay_ms=event.post_dial_delay_ms,
        call_setup_ms=event.call_setup_ms,
    )  # fmt: skip


@apply_endpoint.register
def _(event: CallFailed, ep: EndpointState) -> EndpointState:
    return replace(ep, sip_code=event.sip_code, reason=event.reason)


@apply_endpoint.register
def _(event: CallEnded, ep: EndpointState) -> EndpointState:
    return replace(ep, call_duration_s=event.duration_s)


@apply_endpoint.register
def _(event: EndpointFinished, ep: EndpointState) -> EndpointState:
    code = event.sip_code if event.sip_code is not None else ep.sip_code
    return replace(
        ep, outcome=event.outcome, reason=event.reason or ep.reason, sip_code=code,
        finished_at=event.occurred_at, phase="CLOSED",
    )  # fmt: skip


@dataclass
class RunsProjection:
    """Indexes run and endpoint states by id; every change goes through apply_*."""

    runs: dict[str, RunState] = field(default_factory=dict)
    endpoints: dict[str, dict[str, EndpointState]] = field(default_factory=dict)
    position: int = 0

    def apply(self, seq: int, event: Event) -> tuple[str | None, str | None]:
        """Fold one event; returns (run_id, endpoint_id) it touched, for writers."""
        self.position = max(self.position, seq)
        if isinstance(event, RunCreated):
            if event.run_id in self.runs:
                return None, None
            self.runs[event.run_id] = RunState(
                event.run_id, event.test_id, event.definition, created_at=event.occurred_at,
                history=(StatusChange("PENDING", event.occurred_at),),
                total_endpoints=event.definition.total_endpoints(),
            )  # fmt: skip
            self.endpoints[event.run_id] = {
                ep.endpoint_id: ep for ep in initial_endpoints(event.run_id, event.definition)
            }
            return event.run_id, None
        run_id = getattr(event, "run_id", None)
        run = self.runs.get(run_id) if run_id else None
        if run is None:
            return None, None
        ep_id = getattr(event, "endpoint_id", None)
        if isinstance(event, RunDispatching) and run.status in ("PENDING", "QUEUED"):
            eps = self.endpoints[run.run_id]
            for ep_key, worker in event.plan.items():
                if ep_key in eps:
                    eps[ep_key] = replace(eps[ep_key], planned_worker=worker)
        if ep_id is None:
            self.runs[run.run_id] = apply_run(event, run)
            return run.run_id, None
        return run.run_id, self._apply_endpoint(run, ep_id, event)

    def _apply_endpoint(self, run: RunState, ep_id: str, event: Event) -> str | None:
        eps = self.endpoints[run.run_id]
        ep = eps.get(ep_id)
        if ep is None:
            return None
        if ep.outcome is not None:
            # Late report (e.g. from a worker declared lost): recorded, never re-counted.
            eps[ep_id] = replace(ep, late_events=ep.late_events + 1)
            return ep_id
        new = apply_endpoint(event, ep)
        eps[ep_id] = new
        if new.outcome is not None:
            self.runs[run.run_id] = replace(run, finished_endpoints=run.finished_endpoints + 1)
        return ep_id
