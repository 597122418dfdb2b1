"""Runs probes: starts each execution as a small run, judges it once evaluated, and
publishes ProbeHealthChanged when the probe's health changes.

Why runs: an execution is a run of one or two real pjsua2 endpoints, so its MOS,
post-dial delay and success are measured exactly as a test's (workers, ingest,
callmeter_storage.stats, the evaluator's RunEvaluated) and every run page, trace
and export works for it. A lighter path (a SIP OPTIONS ping, or a call placed by
the API itself) would measure no media, or a second copy of what workers do.

Every API process runs this loop. An execution is claimed in the database
(storage probes.claim_execution: added only while the probe's latest execution is
still the one the process decided after, under the probe's lock), and only the
process that claimed it publishes its RunCreated. So with several processes each
slot is one run, and none starts while another process's latest still runs. Whether an execution
changes the probe's health is decided from the rows of the executions before it
(each keeps the probe's health after it), never from a process's own fold of past
events, so every process judging it decides the same change under the same event
id (derived from probe and run), and JetStream keeps one ProbeHealthChanged. The
event is published before the execution's judgement is stored: a process dying in
between is followed by another judging the same run again and publishing the same
(dropped) event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from callmeter_events import (
    TERMINAL_STATUSES,
    Event,
    Health,
    ProbeHealthChanged,
    RunCreated,
    RunStatus,
)
from callmeter_projections import ProbeHealthState, RunState, apply_probe
from callmeter_projections.documents import run_state
from callmeter_storage import probes as rows
from callmeter_storage import results

from . import probe_core, probes, resources
from .deps import Platform
from .errors import ApiError

log = logging.getLogger(__name__)
# An execution whose run is not found this long after it was started is not judged.
LOST_AFTER_S = 600.0


class ProbeRunner:
    def __init__(self, p: Platform) -> None:
        self.p = p
        self.health: dict[str, ProbeHealthState] = {}  # the fold of ProbeHealthChanged
        self.writes: set[asyncio.Future[None]] = set()

    def observe(self, event: Event) -> None:
        """Called for every folded event: fold health changes and store the fold."""
        if not isinstance(event, ProbeHealthChanged):
            return
        state = apply_probe(event, self.health.get(event.probe_id))
        if state is None or state is self.health.get(event.probe_id):
            return
        self.health[event.probe_id] = state
        task = asyncio.ensure_future(
            resources.query(
                self.p, rows.set_health, state.probe_id, state.health, state.since, state.run_id
            )
        )
        # Held until done: the loop keeps tasks only weakly.
        self.writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Future[None]) -> None:
        self.writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("storing a probe's health: %s", task.exception())

    async def start(self) -> None:
        """Read back the folded health (the snapshot)."""
        for found in await resources.query(self.p, rows.list_probes):
            if found["health"]:
                self.health[found["id"]] = ProbeHealthState(
                    found["id"], Health(found["health"]), found["since"], ""
                )

    async def run(self, stop: asyncio.Event) -> None:
        tick = self.p.settings.probe_tick_s
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("probe tick")
            await asyncio.sleep(tick)

    async def tick(self) -> None:
        # Every process's latest executions, read from the database each tick.
        latest = await resources.query(self.p, rows.last_executions)
        for found in await resources.query(self.p, rows.list_probes):
            for run_id, slot, started in await resources.query(self.p, rows.unjudged, found["id"]):
                if not await self.judge(found, run_id, slot, started):
                    break  # judged in order: a later one waits for this one
            if found["enabled"]:
                await self.maybe_start(found, latest.get(found["id"]))

    def _run(self, run_id: str) -> RunState | None:
        """The run as folded (in memory), or read back from its row once settled."""
        run = self.p.projector.models.runs.runs.get(run_id)
        if run is not None:
            return run
        with self.p.pool.connection() as conn:
            doc = results.run_row(conn, run_id)
        return run_state(doc) if doc else None

    def _outcomes(self, run_id: str) -> dict[str, int]:
        """How many of the run's endpoints ended with each outcome, as folded (in
        memory), or read back once settled."""
        folded = self.p.projector.models.runs.endpoints.get(run_id)
        if folded:
            return dict(Counter(str(e.outcome) for e in folded.values() if e.outcome))
        with self.p.pool.connection() as conn:
            return results.outcomes(conn, run_id)

    async def maybe_start(
        self, found: dict[str, Any], last: tuple[int, str, datetime] | None
    ) -> None:
        busy = False
        if last is not None:
            run = await asyncio.to_thread(self._run, last[1])
            if run is None:  # claimed, and its RunCreated not folded here yet
                busy = (datetime.now(UTC) - last[2]).total_seconds() < LOST_AFTER_S
            else:
                busy = run.status not in TERMINAL_STATUSES
        slot = probe_core.due(time.time(), found["interval_s"], last and last[0], busy)
        if slot is None:
            return
        run_id = probe_core.execution_run_id(found["id"], slot)
        definition = await probes.target(self.p, found)
        if definition is None:
            log.warning("probe %s: its test %s is gone", found["id"], found.get("test_id"))
            return
        definition = definition.model_copy(
            update={
                "name": f"probe: {found['name']}"[:200],
                "thresholds": [*found["unhealthy"], *found["degraded"]],
                "webhooks": [],  # probes alert through the project's webhooks, on change
            }
        )
        try:
            definition = await resources.resolve(self.p, definition)
        except ApiError as exc:
            log.warning("probe %s: %s", found["id"], exc.message)
            return
        claimed = await resources.query(
            self.p, rows.claim_execution, found["id"], slot, run_id, last and last[0]
        )
        if not claimed:
            return  # another API process claimed this slot (or a later one) first
        log.info("probe %s: execution %s (slot %d) claimed", found["id"], run_id, slot)
        test_id = found.get("test_id") or found["id"]
        await self.p.bus.publish(RunCreated(run_id=run_id, test_id=test_id, definition=definition))

    async def judge(self, found: dict[str, Any], run_id: str, slot: int, started: datetime) -> bool:
        """Judge an execution once its run is evaluated (or refused); False: not yet."""
        run = await asyncio.to_thread(self._run, run_id)
        if run is None:
            if (datetime.now(UTC) - started).total_seconds() < LOST_AFTER_S:
                return False  # its RunCreated is not folded yet
            # Deleted, or never created (the process died in between): not judged.
            stored, _ = await resources.query(self.p, rows.before, found["id"], slot, 0)
            gone = {"health": None, "reason": "its run is gone", "mos": None}
            extra = {"post_dial_delay_ms": None, "success_pct": None, "probe_health": stored}
            await resources.query(self.p, rows.record, run_id, gone | extra)
            return True
        refused = run.status == RunStatus.CANNOT_RUN_FOR_NOW
        if not refused and run.evaluation is None:
            return False  # still running, or its samples are not all stored yet
        not_run = f"not run: {run.reason}" if refused else ""
        if run.evaluation is not None and run.evaluation.generator_overloaded_at is not None:
            not_run = f"not judged: the load generator was overloaded ({run.evaluation.generator_overload})"
        if not not_run:
            outcomes = await asyncio.to_thread(self._outcomes, run_id)
            outages = [o.describe() for o in run.outages]
            not_run = probe_core.platform_fault(outcomes, outages)
        metrics = run.evaluation.metrics if run.evaluation is not None else None
        calls = probe_core.places_calls(run.definition)
        judged = probe_core.judge(metrics, found["degraded"], found["unhealthy"], calls, not_run)
        after = await self.settle(found, run_id, slot, judged)
        await resources.query(
            self.p,
            rows.record,
            run_id,
            {
                "health": judged.health,
                "reason": judged.reason,
                "mos": judged.mos,
                "post_dial_delay_ms": judged.post_dial_delay_ms,
                "success_pct": judged.success_pct,
                "probe_health": after,
            },
        )
        return True

    async def settle(
        self, found: dict[str, Any], run_id: str, slot: int, judged: probe_core.Judgement
    ) -> Health | None:
        """Publish the change this execution makes, if any; the probe's health after it."""
        stored, recent = await resources.query(
            self.p, rows.before, found["id"], slot, found["confirm"] - 1
        )
        now = Health(stored) if stored else None
        new, after = probe_core.decide(
            now, [Health(h) for h in recent], judged.health, found["confirm"]
        )
        if new is None:
            return after
        event = ProbeHealthChanged(
            run_id=run_id,
            probe_id=found["id"],
            probe_name=found["name"],
            project=found["project"],
            previous=now,
            health=new,
            reason=judged.reason,
            mos=judged.mos,
            post_dial_delay_ms=judged.post_dial_delay_ms,
            success_pct=judged.success_pct,
        )
        await self.p.bus.publish(event)
        log.info("probe %s: %s -> %s on execution %s", found["id"], now, new, run_id)
        return after
