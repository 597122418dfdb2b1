"""Phased dispatch as a pure function of the folded world.

QUEUED run without a plan -> RunDispatching(plan) when it fits (FIFO).
Planned run -> receivers (and idle endpoints) assigned, RunStarted.
Running run -> callers assigned once their callee group is ready, with the
receivers' resolved URIs; a caller whose receiver failed or never became
ready finishes with a clear outcome instead of dialling into nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from callmeter_common.reconciler import World
from callmeter_events import (
    EndpointAssigned,
    EndpointConfig,
    EndpointFinished,
    Event,
    Outcome,
    ReceiverWaitExtended,
    RunDispatching,
    RunStarted,
    RunStatus,
    SinglePattern,
    WorkerLost,
)
from callmeter_projections import EndpointState, RunState

from .allocation import AllocationError, GroupDemand, WorkerSlot, allocate

# A receiver's callers are dispatched once its whole group is ready and then stagger
# over buildup_s like it did: its INVITE comes within buildup_s (plus registration) of
# it being ready. It waits duration + buildup + this margin, then ends NO_INCOMING_CALL,
# so a run whose callers all failed still ends in time with a reason.
NO_CALL_MARGIN_S = 10.0
# Callers with a pattern time their calls from pattern_lead_s() after they are sent out
# (time to start their hosts and register), the same instant for the whole group.


@dataclass(frozen=True)
class Timing:
    heartbeat_s: float = 1.0
    missed_heartbeats: int = 3
    receiver_wait_s: float = 30.0
    stop_timeout_s: float = 25.0  # a stop ends within this, workers confirming or not


def busy_slots(world: World) -> Counter[str]:
    """Endpoints planned on each worker that have not finished yet."""
    busy: Counter[str] = Counter()
    for run in world.runs.runs.values():
        if run.terminal or not run.dispatched:  # most runs are history: skip them whole
            continue
        for ep in world.runs.endpoints[run.run_id].values():
            worker = ep.worker_id or ep.planned_worker
            if worker and ep.outcome is None:
                busy[worker] += 1
    return busy


def gone_workers(world: World) -> set[str]:
    """Workers declared lost or gone offline: nothing more is sent to them."""
    return {w.worker_id for w in world.workers.values() if w.status != "ONLINE"}


def lost_workers(world: World, now: datetime, timing: Timing) -> Iterator[Event]:
    """A worker silent for `missed_heartbeats` intervals (plus slack for jitter) is lost;
    silence counts from when this service could hear the workers' stream again."""
    limit = timing.heartbeat_s * timing.missed_heartbeats + 0.5
    heard_since = world.workers_heard_since
    if heard_since is None:
        return  # deaf to every worker right now (NATS failing over): no one is judged
    for w in world.workers.values():
        if w.status != "ONLINE":
            continue
        # Heartbeats a platform outage held back are not the worker's silence: after an
        # outage, a worker has the whole limit again to be heard (when an outage began
        # is only known roughly: by whoever first failed to publish).
        ends = [o.ended_at for o in world.runs.outages if o.ended_at > w.last_seen]
        if (now - max([w.last_seen, heard_since, *ends])).total_seconds() > limit:
            reason = (
                f"missed {timing.missed_heartbeats} heartbeats ({timing.heartbeat_s:g} s apart); "
                f"last heard at {w.last_seen:%H:%M:%S}"
            )
            yield WorkerLost(worker_id=w.worker_id, reason=reason, last_seq=w.seq)


def orphaned_endpoints(world: World) -> Iterator[Event]:
    """Endpoints on a lost or offline worker end as WORKER_LOST; the run goes on."""
    gone = gone_workers(world)
    if not gone:
        return
    for run in world.runs.runs.values():
        if run.terminal or not run.dispatched:
            continue
        for ep in world.runs.endpoints[run.run_id].values():
            worker = ep.worker_id or ep.planned_worker
            if ep.outcome is None and worker in gone:
                state = world.workers[worker].status.lower()
                yield EndpointFinished(
                    run_id=run.run_id,
                    endpoint_id=ep.endpoint_id,
                    outcome=Outcome.WORKER_LOST,
                    reason=f"worker {worker} {state} before this endpoint finished",
                )


def plan_queued(world: World) -> Iterator[Event]:
    """FIFO: plan the oldest queued runs while they fit; the first that does not, waits."""
    online = [w for w in world.workers.values() if w.status == "ONLINE"]
    busy = busy_slots(world)
    free = {w.worker_id: max(0, w.capacity - busy[w.worker_id]) for w in online}
    queued = sorted(
        (r for r in world.runs.runs.values() if r.status == RunStatus.QUEUED and not r.dispatched),
        key=lambda r: (r.history[-1].at, r.run_id),
    )
    for run in queued:
        if run.stop_requested:
            continue
        eps = world.runs.endpoints[run.run_id]
        demands = [
            GroupDemand(
                g.name,
                tuple(e.endpoint_id for e in eps.values() if e.group == g.name),
                g.region,
                tuple(g.workers),
            )
            for g in run.definition.groups
        ]
        slots = [WorkerSlot(w.worker_id, w.region, free[w.worker_id]) for w in online]
        try:
            plan = allocate(demands, slots)
        except AllocationError:
            return  # waits in QUEUED until capacity frees up
        for worker in plan.values():
            free[worker] -= 1
        yield RunDispatching(run_id=run.run_id, worker_ids=sorted(set(plan.values())), plan=plan)


def endpoint_config(
    run: RunState, ep: EndpointState, target_uri: str | None, now: datetime | None = None
) -> EndpointConfig:
    group = next(g for g in run.definition.groups if g.name == ep.group)
    index = int(ep.endpoint_id.rsplit("-", 1)[1]) - 1
    account = group.accounts[index] if group.registrar and index < len(group.accounts) else None
    # a receiver learns the pattern of the group calling it: not single, it takes call
    # after call until call_wait_s; a caller gets its own and its place in the rotation
    caller_group = next((g for g in run.definition.groups if g.calls == group.name), None)
    # (a capacity search in calls per second steps the rate: stepped_pattern)
    pattern = run.definition.stepped_pattern(group) if ep.role == "caller" else None
    if ep.role == "receiver" and caller_group is not None:
        pattern = run.definition.stepped_pattern(caller_group)
    patterned = pattern is not None and pattern.kind != "single"
    duration_s = run.definition.duration_s
    # a caller with a pattern starts at once: the pattern itself spreads the calls
    start_delay_s = 0.0 if patterned else run.definition.buildup_s * index / group.endpoints
    capacity = run.definition.capacity
    if capacity is not None and ep.role in ("caller", "receiver"):
        # A capacity search: caller n joins in its step and calls until the run's end;
        # receiver n (called by caller n) is ready from the start and ends with its call.
        joins_s = capacity.step_of(index) * capacity.step_s
        duration_s -= joins_s
        start_delay_s = joins_s if ep.role == "caller" else 0.0
    return EndpointConfig(
        group=group.name,
        role=ep.role,
        codecs=list(group.codecs),  # type: ignore[arg-type]
        duration_s=duration_s,
        start_delay_s=start_delay_s,
        username=account.username if account else ep.endpoint_id.lower(),
        target_uri=target_uri or group.target_uri,
        registrar=group.registrar,
        account=account,
        drop_tx_pct=group.drop_tx_pct,
        drop_rx_pct=group.drop_rx_pct,
        options=group.options,
        scenario=list(group.scenario),
        audio=group.audio,
        call_wait_s=receiver_wait_s(run) if ep.role == "receiver" else None,
        speech_reference=run.definition.speech_samples().get(ep.endpoint_id),
        pattern=pattern or SinglePattern(),
        group_index=index,
        group_size=group.endpoints,
        calls_from=now + timedelta(seconds=run.definition.pattern_lead_s())
        if patterned and ep.role == "caller" and now is not None
        else None,
    )


def _assign(
    run: RunState, ep: EndpointState, target_uri: str | None = None, now: datetime | None = None
) -> EndpointAssigned:
    assert ep.planned_worker is not None
    return EndpointAssigned(
        run_id=run.run_id,
        endpoint_id=ep.endpoint_id,
        worker_id=ep.planned_worker,
        config=endpoint_config(run, ep, target_uri, now),
    )


def paired_receiver(
    run: RunState, caller: EndpointState, eps: dict[str, EndpointState]
) -> EndpointState | None:
    """Caller n of a group calls receiver ((n-1) mod size)+1 of its callee group."""
    group = next(g for g in run.definition.groups if g.name == caller.group)
    if not group.calls:
        return None
    callee = next(g for g in run.definition.groups if g.name == group.calls)
    index = int(caller.endpoint_id.rsplit("-", 1)[1]) - 1
    return eps[f"{callee.name}-{index % callee.endpoints + 1}"]


def start_planned(
    world: World, run: RunState, now: datetime, timing: Timing, gone: set[str]
) -> Iterator[Event]:
    """Phase 1: receivers and idle endpoints go out first; callers wait for them."""
    eps = world.runs.endpoints[run.run_id]
    # a patterned group's callers go out once its receivers are ready, at the latest
    # when the wait for them is over (dispatch_callers): their receivers wait for that
    callers_out_by = now + timedelta(seconds=timing.receiver_wait_s + run.definition.buildup_s)
    for ep in eps.values():
        if ep.role != "caller" and ep.worker_id is None and ep.outcome is None:
            if ep.planned_worker not in gone:  # else orphaned_endpoints finishes it
                assigned = _assign(run, ep)
                yield assigned
                caller = paired_caller(run, ep, eps)
                if caller is not None and assigned.config.pattern.kind != "single":
                    yield ReceiverWaitExtended(
                        run_id=run.run_id,
                        endpoint_id=ep.endpoint_id,
                        worker_id=assigned.worker_id,
                        caller_id=caller.endpoint_id,
                        wait_until=first_call_deadline(run, callers_out_by, 0.0),
                    )
    yield RunStarted(run_id=run.run_id)


def first_call_deadline(run: RunState, sent_out: datetime, start_delay_s: float) -> datetime:
    """The latest a patterned caller sent out at `sent_out` may still make its first
    call: after its start delay, its host's start and registration (pattern_start_s),
    and then the pattern's end (a caller ready late shifts its calls; none is planned
    later than the run's duration from its start), plus buildup and the margin."""
    start_s = run.definition.pattern_start_s()
    return sent_out + timedelta(seconds=start_delay_s + start_s + receiver_wait_s(run))


def extend_receiver_wait(
    run: RunState, receiver: EndpointState, caller: EndpointAssigned, now: datetime
) -> Iterator[ReceiverWaitExtended]:
    """A caller with a pattern goes out: its receiver waits for the first call until
    the caller's first_call_deadline, not only call_wait_s after it was ready itself
    (a caller's host may start long after its receiver on a loaded machine)."""
    if caller.config.pattern.kind == "single" or receiver.worker_id is None:
        return
    yield ReceiverWaitExtended(
        run_id=run.run_id,
        endpoint_id=receiver.endpoint_id,
        worker_id=receiver.worker_id,
        caller_id=caller.endpoint_id,
        wait_until=first_call_deadline(run, now, caller.config.start_delay_s),
    )


def receiver_wait_s(run: RunState) -> float:
    """A receiver's call_wait_s (see NO_CALL_MARGIN_S)."""
    return run.definition.duration_s + run.definition.buildup_s + NO_CALL_MARGIN_S


def paired_caller(
    run: RunState, receiver: EndpointState, eps: dict[str, EndpointState]
) -> EndpointState | None:
    """The first caller that calls this receiver (see paired_receiver), if any."""
    group = next((g for g in run.definition.groups if g.calls == receiver.group), None)
    if group is None:
        return None
    index = int(receiver.endpoint_id.rsplit("-", 1)[1])
    return eps.get(f"{group.name}-{index}") if index <= group.endpoints else None


def dispatch_callers(
    world: World, run: RunState, now: datetime, timing: Timing, gone: set[str]
) -> Iterator[Event]:
    """Phase 2: a caller goes out once its callee group is ready (or the wait is over)."""
    eps = world.runs.endpoints[run.run_id]
    receivers = [e for e in eps.values() if e.role == "receiver"]
    ready_groups = {
        g.name
        for g in run.definition.groups
        if all(r.contact_uri or r.outcome for r in receivers if r.group == g.name)
    }
    assert run.started_at is not None
    waited = (now - run.started_at).total_seconds()
    timed_out = waited > timing.receiver_wait_s + run.definition.buildup_s
    for ep in eps.values():
        if ep.role != "caller" or ep.worker_id is not None or ep.outcome is not None:
            continue
        if ep.planned_worker in gone:
            continue  # orphaned_endpoints finishes it as WORKER_LOST
        receiver = paired_receiver(run, ep, eps)
        if receiver is None:  # dials a URI given in the test
            yield _assign(run, ep, now=now)
        elif receiver.outcome:
            # Registered or not, a callee that has finished cannot answer: dialling it
            # would only hang until the INVITE times out.
            yield EndpointFinished(
                run_id=run.run_id,
                endpoint_id=ep.endpoint_id,
                outcome=Outcome.CALL_FAILED,
                reason=f"callee {receiver.endpoint_id} ended before the call: "
                f"{receiver.outcome} {receiver.reason}".rstrip(),
                sip_code=receiver.sip_code,
            )
        elif receiver.contact_uri and (receiver.group in ready_groups or timed_out):
            assigned = _assign(run, ep, receiver.contact_uri, now)
            yield assigned
            yield from extend_receiver_wait(run, receiver, assigned, now)
        elif timed_out:
            yield EndpointFinished(
                run_id=run.run_id,
                endpoint_id=ep.endpoint_id,
                outcome=Outcome.TIMEOUT,
                reason=f"callee {receiver.endpoint_id} not ready after {waited:.0f} s",
            )


def stop_endpoints(world: World, run: RunState, now: datetime, timing: Timing) -> Iterator[Event]:
    """Endpoints never started finish now; running ones are their workers' to hang up,
    but a worker that has not confirmed after `stop_timeout_s` must not hold the stop
    (users are promised it ends): those finish TEARDOWN_ERROR."""
    stopping_for = (now - run.history[-1].at).total_seconds()  # STOPPING is the latest
    for ep in world.runs.endpoints[run.run_id].values():
        if ep.outcome is not None:
            continue
        if ep.worker_id is None:
            yield EndpointFinished(
                run_id=run.run_id,
                endpoint_id=ep.endpoint_id,
                outcome=Outcome.COMPLETED_WITH_WARNINGS,
                reason="run stopped before this endpoint started",
            )
        elif stopping_for > timing.stop_timeout_s:
            yield EndpointFinished(
                run_id=run.run_id,
                endpoint_id=ep.endpoint_id,
                outcome=Outcome.TEARDOWN_ERROR,
                reason=f"worker {ep.worker_id} did not confirm the hangup within "
                f"{timing.stop_timeout_s:g} s of the stop",
            )


def decide(world: World, now: datetime, timing: Timing) -> Iterator[Event]:
    """Every dispatch event the current state calls for, stamped with `now`.

    Stamping with the decision time (not the wall clock) keeps the function pure:
    the run's started_at, and so every wait measured from it, follows `now`.
    """
    for event in _decide(world, now, timing):
        yield event.model_copy(update={"occurred_at": now})


def _decide(world: World, now: datetime, timing: Timing) -> Iterator[Event]:
    yield from lost_workers(world, now, timing)
    yield from orphaned_endpoints(world)
    yield from plan_queued(world)
    gone = gone_workers(world)
    for run in world.runs.runs.values():
        if run.status == RunStatus.QUEUED and run.dispatched and not run.stop_requested:
            yield from start_planned(world, run, now, timing, gone)
        elif run.status == RunStatus.RUNNING and not run.stop_requested:
            yield from dispatch_callers(world, run, now, timing, gone)
        elif run.status == RunStatus.STOPPING:
            yield from stop_endpoints(world, run, now, timing)
