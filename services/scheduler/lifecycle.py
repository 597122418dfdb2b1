"""The run lifecycle as a pure function: state in, the events that should follow out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from callmeter_common.reconciler import World
from callmeter_events import (
    Event, RunCompleted, RunFailed, RunQueued, RunRejected, RunStopping,
)  # fmt: skip
from callmeter_projections import RunState

ACTIVE = ("QUEUED", "RUNNING", "STOPPING")


@dataclass(frozen=True)
class Limits:
    max_endpoints_per_run: int
    max_concurrent_runs: int
    max_concurrent_endpoints: int
    grace_s: float
    receiver_wait_s: float = 30.0


def rejection_reason(run: RunState, world: World, limits: Limits) -> str | None:
    """Why a PENDING run cannot run now, in words a user can act on; None if it can."""
    d = run.definition
    total = d.total_endpoints()
    if total > limits.max_endpoints_per_run:
        return f"{total} endpoints exceed the limit of {limits.max_endpoints_per_run} per run"
    active = [r for r in world.runs.runs.values() if r.status in ACTIVE]
    if len(active) >= limits.max_concurrent_runs:
        return f"{len(active)} runs already active (limit {limits.max_concurrent_runs})"
    busy = sum(r.total_endpoints for r in active)
    if busy + total > limits.max_concurrent_endpoints:
        return (
            f"{busy} endpoints already running + {total} would exceed the limit of "
            f"{limits.max_concurrent_endpoints} concurrent endpoints"
        )
    online = [w for w in world.workers.values() if w.status == "ONLINE"]
    for group in d.groups:
        in_region = [w for w in online if group.region in (None, w.region)]
        if not in_region:
            where = f" in region {group.region!r}" if group.region else ""
            return f"no worker online{where} for group {group.name!r}; start one with `callmeter worker`"
        if group.registrar and len(group.accounts) < group.endpoints:
            return (
                f"group {group.name!r} has {group.endpoints} endpoints but only "
                f"{len(group.accounts)} SIP accounts"
            )
    capacity = sum(w.capacity for w in online)
    if total > capacity:
        return f"{total} endpoints exceed the {capacity} endpoint slots of the online workers"
    return None


def _all_failed(outcomes: list[str | None], outcome: str) -> bool:
    return bool(outcomes) and all(o == outcome for o in outcomes)


def decide_run(run: RunState, world: World, now: datetime, limits: Limits) -> Iterator[Event]:
    if run.status == "PENDING":
        reason = rejection_reason(run, world, limits)
        yield (
            RunRejected(run_id=run.run_id, reason=reason)
            if reason
            else RunQueued(run_id=run.run_id)
        )
        return
    if run.terminal:
        return
    if run.stop_requested and run.status in ("QUEUED", "RUNNING"):
        yield RunStopping(run_id=run.run_id)
        return
    if run.status == "QUEUED" or run.started_at is None:
        if run.status == "STOPPING":  # stopped before anything was dispatched
            yield RunCompleted(run_id=run.run_id, stopped=True)
        return
    if run.finished_endpoints >= run.total_endpoints:
        outcomes = [e.outcome for e in world.runs.endpoints[run.run_id].values()]
        if _all_failed(outcomes, "REGISTRATION_FAILED"):
            yield RunFailed(run_id=run.run_id, reason="every endpoint failed to register")
        elif _all_failed(outcomes, "WORKER_LOST"):
            yield RunFailed(run_id=run.run_id, reason="every worker of the run was lost")
        else:
            yield RunCompleted(run_id=run.run_id, stopped=run.stopped)
        return
    budget = run.definition.duration_s + run.definition.buildup_s * 2 + limits.receiver_wait_s
    if (now - run.started_at).total_seconds() > budget + limits.grace_s:
        yield RunFailed(
            run_id=run.run_id,
            reason=f"run exceeded its duration plus a grace period of {limits.grace_s:.0f} s",
        )


def decide(world: World, now: datetime, limits: Limits) -> Iterator[Event]:
    """Every lifecycle event the current state calls for, oldest run first."""
    for run in sorted(world.runs.runs.values(), key=lambda r: (r.created_at or now, r.run_id)):
        yield from decide_run(run, world, now, limits)
