"""The run lifecycle as a pure function: state in, the events that should follow out.

PENDING runs are validated (limits, workers, SIP accounts) and queued or
rejected with a reason a user can act on; running runs end COMPLETED when every
endpoint has finished, FAILED when nothing could work (no registration, every
worker lost) or when they overrun; a stop request goes through STOPPING.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from callmeter_common.reconciler import World
from callmeter_events import (
    Event,
    Outcome,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunRejected,
    RunStatus,
    RunStopping,
    lost_host,
)
from callmeter_projections import EndpointState, RunState, covered_s

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.STOPPING)


@dataclass(frozen=True)
class Limits:
    max_endpoints_per_run: int = 2_000
    max_concurrent_runs: int = 10  # per organisation: the whole installation
    max_concurrent_endpoints: int = 5_000
    grace_s: float = 60.0
    receiver_wait_s: float = 30.0
    max_concurrent_runs_per_project: int = 5


def _limit_reason(run: RunState, active: list[RunState], limits: Limits) -> str | None:
    total = run.total_endpoints
    if total > limits.max_endpoints_per_run:
        return (
            f"{total} endpoints exceed the limit of {limits.max_endpoints_per_run} per run; "
            "reduce the group sizes or raise CALLMETER_MAX_ENDPOINTS_PER_RUN"
        )
    project = run.definition.project
    in_project = [r for r in active if r.definition.project == project]
    if len(in_project) >= limits.max_concurrent_runs_per_project:
        return (
            f"project {project!r} already has {len(in_project)} active runs (limit "
            f"{limits.max_concurrent_runs_per_project}); wait for one to finish or raise "
            "CALLMETER_MAX_CONCURRENT_RUNS_PER_PROJECT"
        )
    if len(active) >= limits.max_concurrent_runs:
        return (
            f"the organisation already has {len(active)} active runs (limit "
            f"{limits.max_concurrent_runs}); wait for one to finish or raise "
            "CALLMETER_MAX_CONCURRENT_RUNS"
        )
    busy = sum(r.total_endpoints for r in active)
    if busy + total > limits.max_concurrent_endpoints:
        return (
            f"{busy} endpoints already active + {total} would exceed the limit of "
            f"{limits.max_concurrent_endpoints} concurrent endpoints; wait for a run to "
            "finish or raise CALLMETER_MAX_CONCURRENT_ENDPOINTS"
        )
    return None


def _worker_reason(run: RunState, world: World) -> str | None:
    """Workers and accounts: can every group ever be placed with what is online?"""
    online = {w.worker_id: w for w in world.workers.values() if w.status == "ONLINE"}
    demand: dict[tuple[str, ...], int] = {}  # eligible worker set -> endpoints it must hold
    for group in run.definition.groups:
        if group.registrar and len(group.accounts) < group.endpoints:
            return (
                f"group {group.name!r} has {group.endpoints} endpoints but only "
                f"{len(group.accounts)} SIP accounts; add accounts or reduce the endpoints"
            )
        if group.workers:
            missing = [w for w in group.workers if w not in online]
            if missing:
                return (
                    f"group {group.name!r} selects workers that are not online: "
                    f"{', '.join(missing)}; start them or change the selection"
                )
            eligible = tuple(sorted(group.workers))
        else:
            eligible = tuple(
                sorted(w for w, s in online.items() if group.region in (None, s.region))
            )
        if not eligible:
            where = f" in region {group.region!r}" if group.region else ""
            return (
                f"no worker online{where} for group {group.name!r}; start one with "
                f"`callmeter worker`{' --region ' + group.region if group.region else ''}"
            )
        demand[eligible] = demand.get(eligible, 0) + group.endpoints
    for eligible, needed in demand.items():
        capacity = sum(online[w].capacity for w in eligible)
        if needed > capacity:
            return (
                f"{needed} endpoints exceed the {capacity} endpoint slots of the workers "
                f"they may use ({', '.join(eligible)}); add workers or reduce the endpoints"
            )
    return None


def _pool_reason(run: RunState, active: list[RunState]) -> str | None:
    """An account of a pool serves one active run at a time: count the free ones."""
    for group in run.definition.groups:
        if not group.account_pool:
            continue
        busy = {
            a.username
            for other in active
            if other.run_id != run.run_id
            for g in other.definition.groups
            if g.account_pool == group.account_pool
            for a in g.accounts[: g.endpoints]
        }
        free = [a for a in group.accounts if a.username not in busy]
        if len(free) < group.endpoints:
            return (
                f"group {group.name!r} has {group.endpoints} endpoints but account pool "
                f"{group.account_pool} has {len(free)} free accounts; add accounts to the "
                "pool, wait for the runs using them, or reduce the endpoints"
            )
    return None


def rejection_reason(
    run: RunState, world: World, limits: Limits, admitted: list[RunState]
) -> str | None:
    """Why a PENDING run cannot run now, in words a user can act on; None if it can.

    `admitted` are runs queued earlier in the same pass, not yet in the world.
    """
    active = [r for r in world.runs.runs.values() if r.status in ACTIVE] + admitted
    return (
        _limit_reason(run, active, limits)
        or _pool_reason(run, active)
        or _worker_reason(run, world)
    )


def _tried(eps: list[EndpointState]) -> list[EndpointState]:
    """Endpoints that ran on a worker, or were meant to: their outcome is first-hand.

    Callers finished without being dispatched (their callee failed) only echo a
    receiver's failure, so they do not decide whether the whole run failed.
    """
    return [e for e in eps if e.worker_id is not None or e.outcome == Outcome.WORKER_LOST]


def _lost_hosts(eps: list[EndpointState]) -> str:
    """ "N endpoint hosts died (…)" when endpoint hosts of the run died, else ""."""
    lost = [e for e in eps if e.outcome == Outcome.OSERROR and lost_host(e.reason)]
    hosts = {(e.worker_id, lost_host(e.reason)) for e in lost}
    if not hosts:
        return ""
    n = len(hosts)
    return (
        f"{n} endpoint host{'s' if n != 1 else ''} died, ending {len(lost)} endpoints OSERROR "
        f"(first: {lost[0].reason})"
    )


def _verdict(run: RunState, eps: list[EndpointState]) -> Event:
    tried = _tried(eps)
    failed: str | None = None
    if not run.stopped and tried and all(e.outcome == Outcome.REGISTRATION_FAILED for e in tried):
        failed = (
            "every endpoint failed to register; check the registrar address, "
            "transport and SIP account credentials"
        )
    elif not run.stopped and tried and all(e.outcome == Outcome.WORKER_LOST for e in tried):
        failed = (
            f"every worker of the run was lost ({', '.join(run.worker_ids)}); "
            "check the workers' connectivity to NATS and their logs"
        )
    receivers = [e for e in tried if e.role == "receiver"]
    if (
        failed is None
        and not run.stopped
        and receivers
        and all(e.outcome == Outcome.NO_INCOMING_CALL for e in receivers)
    ):
        callers = Counter(
            f"{e.outcome}{f' {e.sip_code}' if e.sip_code else ''}"
            for e in eps
            if e.role == "caller"
        )
        how = ", ".join(f"{n} {o}" for o, n in sorted(callers.items())) or "none"
        failed = (
            f"no receiver got a call ({len(receivers)} ended NO_INCOMING_CALL); "
            f"the callers ended: {how}"
        )
    hosts = _lost_hosts(eps)
    if failed is not None:
        return RunFailed(run_id=run.run_id, reason=f"{failed}; {hosts}" if hosts else failed)
    return RunCompleted(run_id=run.run_id, stopped=run.stopped, reason=hosts)


def decide_run(
    run: RunState, world: World, now: datetime, limits: Limits, admitted: list[RunState]
) -> Iterator[Event]:
    if run.terminal:
        return
    if run.status == RunStatus.PENDING:
        reason = rejection_reason(run, world, limits, admitted)
        if reason:
            yield RunRejected(run_id=run.run_id, reason=reason)
        else:
            admitted.append(run)
            yield RunQueued(run_id=run.run_id)
        return
    if run.stop_requested and run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        yield RunStopping(run_id=run.run_id)
        return
    # STOPPING waits like RUNNING: the dispatcher finishes endpoints never started,
    # workers hang up the others, and their final samples are kept.
    if run.finished_endpoints >= run.total_endpoints and run.status in (
        RunStatus.RUNNING,
        RunStatus.STOPPING,
    ):
        yield _verdict(run, list(world.runs.endpoints[run.run_id].values()))
        return
    if run.started_at is None:
        return
    d = run.definition
    # patterned callers start their calls only once their hosts can be ready
    budget = d.duration_s + d.buildup_s * 2 + limits.receiver_wait_s + d.pattern_start_s()
    # Time the platform itself was unreachable is not the endpoints' fault: it is added.
    outage_s = covered_s(run.outages, run.started_at, now)
    if (now - run.started_at).total_seconds() > budget + limits.grace_s + outage_s:
        yield RunFailed(run_id=run.run_id, reason=_overrun_reason(run, limits, outage_s))


def _overrun_reason(run: RunState, limits: Limits, outage_s: float) -> str:
    missing = run.total_endpoints - run.finished_endpoints
    overran = (
        f"run exceeded its duration ({run.definition.duration_s:g} s) plus buildup, "
        f"receiver wait and a grace period of {limits.grace_s:g} s"
    )
    if not run.outages:
        return f"{overran}; {missing} endpoints never reported an outcome: check the workers' logs"
    named = "; ".join(o.describe() for o in run.outages)
    return (
        f"platform outage: {named}; {overran} plus the {outage_s:.0f} s of outage; "
        f"{missing} endpoints never reported an outcome after it"
    )


def decide(world: World, now: datetime, limits: Limits) -> Iterator[Event]:
    """Every lifecycle event the current state calls for, oldest run first, stamped `now`."""
    admitted: list[RunState] = []
    for run in sorted(world.runs.runs.values(), key=lambda r: (r.created_at or now, r.run_id)):
        for event in decide_run(run, world, now, limits, admitted):
            yield event.model_copy(update={"occurred_at": now})
