"""Judges capacity-search runs step by step while they run: CapacityStepJudged, and
StopRequested at the first failed step (or as soon as the generator is overloaded).

Runs inside the API process beside the evaluator (it has the database and the
fold). The decisions are capacity.py's; this module only keeps time, reads the
step's figures and publishes. Several API replicas judge the same step with the
same figures; each fact has one Nats-Msg-Id, so JetStream keeps one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from callmeter_common.bus import Bus
from callmeter_events import RunStatus, StopRequested
from callmeter_projections import RunState
from callmeter_storage import calls, stats

from .capacity import CallTiming, endpoint_values, judge_step, record_values, step_window

log = logging.getLogger(__name__)
# Samples reach the database within about this long of being measured (the worker's
# 250 ms batches, ingest's write): a step is judged once its last second is stored.
STORED_AFTER_S = 3.0
TICK_S = 0.5


class CapacityJudge:
    def __init__(self, bus: Bus, database_url: str, runs: Any) -> None:
        self.bus = bus
        self.database_url = database_url
        self.runs = runs  # the projector's RunsProjection

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for run in [r for r in list(self.runs.runs.values()) if self.due(r)]:
                try:
                    await self.judge_next(run)
                except Exception:
                    log.exception("judging a capacity step of run %s", run.run_id)
            try:
                await asyncio.wait_for(stop.wait(), TICK_S)
            except TimeoutError:
                pass

    @staticmethod
    def due(run: RunState) -> bool:
        """A capacity run with callers out, no failed step and steps left to judge."""
        d = run.definition
        return (
            d.capacity is not None
            and run.callers_assigned_at is not None
            and run.status not in (RunStatus.CANNOT_RUN_FOR_NOW, RunStatus.PENDING)
            and all(s.passed for s in run.capacity_steps)
            and len(run.capacity_steps) < d.capacity_steps()
        )

    async def judge_next(self, run: RunState) -> None:
        assert run.callers_assigned_at is not None
        d = run.definition
        window = step_window(d, run.callers_assigned_at, len(run.capacity_steps))
        overload = run.overloaded_since
        overloaded_at = overload.occurred_at if overload else None
        now = datetime.now(UTC)
        # An overload during the step fails it at once; otherwise wait for its end (and
        # its samples), and never judge seconds the run did not have.
        early = overloaded_at is not None and overloaded_at < window.end
        if not early and now < window.end + timedelta(seconds=STORED_AFTER_S):
            return
        if not early and run.finished_at is not None and run.finished_at < window.end:
            return  # stopped (or ended) before this step was over: nothing to judge
        endpoints = list(self.runs.endpoints[run.run_id].values())

        def query() -> tuple[dict[str, float | None], list[CallTiming]]:
            with psycopg.connect(self.database_url) as conn:
                until = min(window.end, overloaded_at) if overloaded_at else window.end
                values = stats.window_threshold_values(
                    conn, run.run_id, d.model_dump(mode="json"), window.judged_from, until
                )
                records = calls.timings(conn, run.run_id, window.judged_from, until)
                return values, records

        values, records = await asyncio.to_thread(query)
        values.update(endpoint_values(d, endpoints, window.step))
        if window.cps is not None:  # endpoints make many calls: judge the step's calls
            values.update(record_values(records))
        judged = judge_step(d, run.run_id, window, values, overloaded_at)
        await self.bus.publish(judged)
        if not judged.passed and run.status == RunStatus.RUNNING and not run.stop_requested:
            await self.bus.publish(StopRequested(run_id=run.run_id))
