"""Evaluates a finished run's thresholds once its samples are stored: RunEvaluated.

"Stored" is ingest's word, not a guess: the run is evaluated once its
RunSamplesStored (ingest's per-run watermark) is folded, with the figures the
results pages show (callmeter_storage.stats). Runs inside the API process (it has the database and the fold). Several API
replicas may evaluate the same run: they publish the same RunEvaluated with
the same Nats-Msg-Id, and JetStream keeps one (its duplicate window, 2
minutes by default, is far longer than replicas are apart).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from callmeter_common.bus import Bus
from callmeter_events import (
    EVENTS,
    Event,
    RunEvaluated,
    RunStatus,
    ThresholdOutcome,
)
from callmeter_events.thresholds import evaluate, parse
from callmeter_projections import RunState
from callmeter_storage import quality, stats

log = logging.getLogger(__name__)


def run_metrics(
    conn: psycopg.Connection[Any], run: RunState, endpoints: list[Any]
) -> dict[str, float | None]:
    """The values thresholds are judged on (see callmeter_events.thresholds.METRICS):
    quality and timings from callmeter_storage.stats, as the results pages and the API
    show them; call and registration success from the folded endpoints."""
    values = stats.threshold_values(conn, run.run_id, run.definition.model_dump(mode="json"))
    rates = quality.success_rates((e.role, e.phase, e.outcome, 1) for e in endpoints)
    values["call_success_rate"] = rates["call_success_rate"]
    values["registration_success_rate"] = rates["registration_success_rate"]
    return values


class Evaluator:
    def __init__(self, bus: Bus, database_url: str, runs: Any) -> None:
        self.bus = bus
        self.database_url = database_url
        self.runs = runs  # the projector's RunsProjection
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.seen: set[str] = set()

    def observe(self, event: Event) -> None:
        """Called for every folded event: queue runs that finished, whose samples are all
        stored (RunSamplesStored) and that are not evaluated yet."""
        run_id = getattr(event, "run_id", None)
        if event.stream != EVENTS.name or not run_id or run_id in self.seen:
            return
        run = self.runs.runs.get(run_id)
        if isinstance(event, RunEvaluated) or (run and run.evaluation is not None):
            self.seen.add(run_id)
        elif (
            run
            and run.status in (RunStatus.COMPLETED, RunStatus.FAILED)
            and run.samples_stored is not None
        ):
            self.seen.add(run_id)
            self.queue.put_nowait(run_id)

    def resume(self) -> None:
        """Queue the finished, unjudged runs the projector resumed with: their
        RunCompleted was folded before this process started, so observe() missed it."""
        for run in list(self.runs.runs.values()):
            if run.status in ("COMPLETED", "FAILED") and run.evaluation is None:
                if run.run_id not in self.seen:
                    self.seen.add(run.run_id)
                    self.queue.put_nowait(run.run_id)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            run_id = await self.queue.get()
            try:
                await self.evaluate(run_id)
            except Exception:
                log.exception("evaluating run %s", run_id)

    async def evaluate(self, run_id: str) -> None:
        run = self.runs.runs[run_id]
        if run.evaluation is not None:
            return
        endpoints = list(self.runs.endpoints[run_id].values())

        def query() -> dict[str, float | None]:
            with psycopg.connect(self.database_url) as conn:
                return run_metrics(conn, run, endpoints)

        metrics = await asyncio.to_thread(query)
        results = evaluate([parse(t) for t in run.definition.thresholds], metrics)
        outcomes = [
            ThresholdOutcome(expression=r.expression, actual=r.actual, passed=r.passed)
            for r in results
        ]
        overload = run.overloaded_since
        await self.bus.publish(
            RunEvaluated(
                run_id=run_id,
                passed=all(r.passed for r in results),
                results=outcomes,
                metrics=metrics,
                generator_overloaded_at=overload.occurred_at if overload else None,
                generator_overload=(
                    f"worker {overload.worker_id}: {overload.reason}" if overload else ""
                ),
            )
        )
