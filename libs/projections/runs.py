"""Run state folded from CALLMETER_EVENTS; RunsProjection indexes run and endpoint states."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import singledispatch

from callmeter_events import (
    TERMINAL_STATUSES,
    CallRecorded,
    CapacityStepJudged,
    EndpointAssigned,
    EndpointPhaseChanged,
    Event,
    GeneratorOverloaded,
    PlatformOutage,
    RunCompleted,
    RunCreated,
    RunDispatching,
    RunEvaluated,
    RunFailed,
    RunQueued,
    RunRejected,
    RunSamplesStored,
    RunStarted,
    RunStatus,
    RunStopping,
    StopRequested,
    TestDefinition,
)

from .endpoints import EndpointState, apply_endpoint, evolve, initial_endpoints, role_of
from .outages import Outage, merge, of_event

__all__ = [
    "EndpointState",
    "RunState",
    "RunsProjection",
    "StatusChange",
    "apply_endpoint",
    "apply_run",
    "initial_endpoints",
    "role_of",
]


@dataclass(frozen=True)
class StatusChange:
    status: RunStatus
    at: datetime
    reason: str = ""


@dataclass(frozen=True)
class RunState:
    run_id: str
    test_id: str
    definition: TestDefinition
    status: RunStatus = RunStatus.PENDING
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
    evaluation: RunEvaluated | None = None  # thresholds, once results are complete
    outages: tuple[Outage, ...] = ()  # platform outages during the run
    simulated: bool = False  # an endpoint ran on a simulated worker: no media results
    samples_stored: int | None = None  # ingest's watermark: every sample stored (RunSamplesStored)
    # Workers that found themselves overloaded during the run, first crossing each
    overloads: tuple[GeneratorOverloaded, ...] = ()
    callers_assigned_at: datetime | None = None  # the first caller went out (phase 2)
    capacity_steps: tuple[CapacityStepJudged, ...] = ()  # a capacity search's judged steps

    @property
    def overloaded_since(self) -> GeneratorOverloaded | None:
        """The earliest overload: results after its time are not trustworthy."""
        return min(self.overloads, key=lambda o: o.occurred_at, default=None)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _to(
    run: RunState,
    status: RunStatus,
    at: datetime,
    why: str,
    *,
    sets_reason: bool = False,
    **changes: object,
) -> RunState:
    """Move to `status`, recording why in the history (every transition says why).

    `sets_reason` also makes `why` the run's headline reason (rejections, failures,
    stops): the one a user must act on or know about.
    """
    if run.terminal or run.status == status:
        return run  # terminal statuses are final; a repeated fact changes nothing
    history = (*run.history, StatusChange(status, at, why))
    reason = why if sets_reason else run.reason
    return evolve(run, status=status, reason=reason, history=history, **changes)  # type: ignore[arg-type]


def _end(
    run: RunState, status: RunStatus, at: datetime, why: str, sets_reason: bool = True
) -> RunState:
    """Move to terminal `status`, finished at `at` (see _to)."""
    return _to(run, status, at, why, sets_reason=sets_reason, finished_at=at)


@singledispatch
def apply_run(event: Event, run: RunState) -> RunState:
    return run


@apply_run.register
def _(event: RunQueued, run: RunState) -> RunState:
    if run.status != RunStatus.PENDING:
        return run
    why = f"passed validation ({run.total_endpoints} endpoints); waiting for worker capacity"
    return _to(run, RunStatus.QUEUED, event.occurred_at, why)


@apply_run.register
def _(event: RunRejected, run: RunState) -> RunState:
    return _end(run, RunStatus.CANNOT_RUN_FOR_NOW, event.occurred_at, event.reason)


@apply_run.register
def _(event: RunDispatching, run: RunState) -> RunState:
    # The first plan wins: a plan re-derived after a restart must not move endpoints.
    if run.status not in (RunStatus.PENDING, RunStatus.QUEUED) or run.dispatched:
        return run
    return evolve(run, worker_ids=tuple(sorted(event.worker_ids)), dispatched=True)


@apply_run.register
def _(event: RunStarted, run: RunState) -> RunState:
    if run.status not in (RunStatus.PENDING, RunStatus.QUEUED):
        return run
    n = len(run.worker_ids)
    why = f"{run.total_endpoints} endpoints planned on {n} worker{'s' if n != 1 else ''}: " + (
        ", ".join(run.worker_ids)
    )
    return _to(run, RunStatus.RUNNING, event.occurred_at, why, started_at=event.occurred_at)


@apply_run.register
def _(event: StopRequested, run: RunState) -> RunState:
    return run if run.terminal else evolve(run, stop_requested=True)


def _stopped_by(run: RunState) -> str:
    """Who stopped the run: its capacity search at a failed step, else the user."""
    failed = next((s for s in run.capacity_steps if not s.passed), None)
    if failed is None:
        return "the user"
    load = f"{failed.cps:g} calls/s" if failed.cps is not None else f"{failed.calls} calls"
    return f"its capacity search (step {failed.step + 1}, {load}, failed)"


@apply_run.register
def _(event: RunStopping, run: RunState) -> RunState:
    why = f"stop requested by {_stopped_by(run)}; hanging up active calls"
    return _to(run, RunStatus.STOPPING, event.occurred_at, why, sets_reason=True, stopped=True)


@apply_run.register
def _(event: RunCompleted, run: RunState) -> RunState:
    if event.stopped:
        why = f"stopped by {_stopped_by(run)}; everything measured until then is kept"
    else:
        why = f"all {run.total_endpoints} endpoints finished"
    why = f"{why}; {event.reason}" if event.reason else why
    sets_reason = event.stopped or bool(event.reason)
    return _end(run, RunStatus.COMPLETED, event.occurred_at, why, sets_reason)


@apply_run.register
def _(event: RunFailed, run: RunState) -> RunState:
    return _end(run, RunStatus.FAILED, event.occurred_at, event.reason)


@apply_run.register
def _(event: RunEvaluated, run: RunState) -> RunState:
    return evolve(run, evaluation=event)


@apply_run.register
def _(event: GeneratorOverloaded, run: RunState) -> RunState:
    if any(o.worker_id == event.worker_id for o in run.overloads):
        return run  # the first crossing per worker is the fact that matters
    return evolve(run, overloads=(*run.overloads, event))


@apply_run.register
def _(event: CapacityStepJudged, run: RunState) -> RunState:
    if any(s.step == event.step for s in run.capacity_steps):
        return run
    steps = sorted((*run.capacity_steps, event), key=lambda s: s.step)
    return evolve(run, capacity_steps=tuple(steps))


@apply_run.register
def _(event: RunSamplesStored, run: RunState) -> RunState:
    return evolve(run, samples_stored=event.samples)


def _created(event: RunCreated) -> str:
    return f"run requested: {event.definition.total_endpoints()} endpoints, " + (
        f"{event.definition.duration_s:g} s"
    )


@dataclass
class RunsProjection:
    """Indexes run and endpoint states by id; every change goes through apply_*."""

    runs: dict[str, RunState] = field(default_factory=dict)
    endpoints: dict[str, dict[str, EndpointState]] = field(default_factory=dict)
    position: int = 0
    outages: tuple[Outage, ...] = ()  # every platform outage reported, merged

    def apply_outage(self, seq: int, event: PlatformOutage) -> list[str]:
        """Record an outage on the platform and on every run it overlaps; those runs' ids."""
        self.position = max(self.position, seq)
        outage = of_event(event)
        self.outages = merge(self.outages, outage)
        touched = []
        for run in self.runs.values():
            started = run.created_at or outage.started_at
            if started <= outage.ended_at and (
                run.finished_at is None or run.finished_at >= outage.started_at
            ):
                self.runs[run.run_id] = evolve(run, outages=merge(run.outages, outage))
                touched.append(run.run_id)
        return touched

    def apply(self, seq: int, event: Event) -> tuple[str | None, str | None]:
        """Fold one event; returns (run_id, endpoint_id) it touched, for writers."""
        if isinstance(event, PlatformOutage):
            self.apply_outage(seq, event)
            return None, None
        self.position = max(self.position, seq)
        if isinstance(event, CallRecorded):
            return None, None  # one a call: stored by ingest, in no run or endpoint state
        if isinstance(event, RunCreated):
            if event.run_id in self.runs:
                return None, None
            self.runs[event.run_id] = RunState(
                event.run_id,
                event.test_id,
                event.definition,
                created_at=event.occurred_at,
                history=(StatusChange(RunStatus.PENDING, event.occurred_at, _created(event)),),
                total_endpoints=event.definition.total_endpoints(),
            )
            self.endpoints[event.run_id] = {
                ep.endpoint_id: ep for ep in initial_endpoints(event.run_id, event.definition)
            }
            return event.run_id, None
        run_id = getattr(event, "run_id", None)
        run = self.runs.get(run_id) if run_id else None
        if run is None:
            return None, None
        ep_id = getattr(event, "endpoint_id", None)
        if (
            isinstance(event, RunDispatching)
            and run.status in (RunStatus.PENDING, RunStatus.QUEUED)
            and (not run.dispatched)
        ):
            eps = self.endpoints[run.run_id]
            for ep_key, worker in event.plan.items():
                if ep_key in eps:
                    eps[ep_key] = evolve(eps[ep_key], planned_worker=worker)
        if ep_id is None:
            self.runs[run.run_id] = apply_run(event, run)
            return run.run_id, None
        return run.run_id, self._apply_endpoint(run, ep_id, event)

    def forget(self, run_id: str) -> None:
        """Drop a run from memory: it lives on in storage (or, if deleted, nowhere)."""
        self.runs.pop(run_id, None)
        self.endpoints.pop(run_id, None)

    def restore(self, run: RunState, endpoints: Iterable[EndpointState]) -> None:
        """Put back a run read from a snapshot or from storage."""
        self.runs[run.run_id] = run
        self.endpoints[run.run_id] = {e.endpoint_id: e for e in endpoints}

    def _apply_endpoint(self, run: RunState, ep_id: str, event: Event) -> str | None:
        eps = self.endpoints[run.run_id]
        ep = eps.get(ep_id)
        if ep is None:
            return None
        if ep.outcome is not None:
            # Late report (e.g. from a worker declared lost): recorded, never re-counted.
            eps[ep_id] = evolve(ep, late_events=ep.late_events + 1)
            return ep_id
        new = apply_endpoint(event, ep)
        eps[ep_id] = new
        if isinstance(event, EndpointAssigned) and ep.role == "caller":
            if run.callers_assigned_at is None:
                run = self.runs[run.run_id] = evolve(run, callers_assigned_at=event.occurred_at)
        if isinstance(event, EndpointPhaseChanged) and event.simulated and not run.simulated:
            run = self.runs[run.run_id] = evolve(run, simulated=True)
        if new.outcome is not None:
            self.runs[run.run_id] = evolve(run, finished_endpoints=run.finished_endpoints + 1)
        return ep_id
