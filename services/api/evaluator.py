"""Evaluates a finished run's thresholds once its samples are stored: RunEvaluated.

Runs inside the API process (it has the database and the fold). Several API
replicas may evaluate the same run: they publish the same RunEvaluated with
the same Nats-Msg-Id, and JetStream keeps one (its duplicate window, 2
minutes by default, is far longer than replicas are apart).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from nats.js.errors import NotFoundError

from callmeter_common.bus import Bus
from callmeter_events import (
    EVENTS,
    GOOD_OUTCOMES,
    METRICS,
    Event,
    RunEvaluated,
    RunStatus,
    ThresholdOutcome,
)
from callmeter_events.thresholds import evaluate, parse
from callmeter_projections import RunState

log = logging.getLogger(__name__)

_QUALITY = """
SELECT avg(mos), min(mos),
       percentile_cont(0.05) WITHIN GROUP (ORDER BY mos),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY mos),
       avg(jitter_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY jitter_ms),
       100.0 * sum(packets_lost) / nullif(sum(packets_lost) + sum(packets), 0),
       avg(rtt_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms)
FROM metric_samples WHERE run_id = %s AND direction = 'recv'
"""
_QUALITY_KEYS = ("mos_avg", "mos_min", "mos_p5", "mos_p50", "jitter_avg_ms", "jitter_p95_ms",
                 "loss_avg_pct", "rtt_avg_ms", "rtt_p95_ms")  # fmt: skip
_TIMINGS = """
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY (doc->>'post_dial_delay_ms')::float8),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (doc->>'call_setup_ms')::float8)
FROM endpoints WHERE run_id = %s AND doc->>'role' = 'caller'
"""


def run_metrics(
    conn: psycopg.Connection[Any], run: RunState, endpoints: list[Any]
) -> dict[str, float | None]:
    """The values thresholds are judged on (see callmeter_events.thresholds.METRICS)."""
    quality = conn.execute(_QUALITY, (run.run_id,)).fetchone() or (None,) * len(_QUALITY_KEYS)
    timings = conn.execute(_TIMINGS, (run.run_id,)).fetchone() or (None, None)
    values: dict[str, float | None] = {
        k: None if v is None else float(v) for k, v in zip(_QUALITY_KEYS, quality, strict=True)
    }
    values["post_dial_delay_p95_ms"] = None if timings[0] is None else float(timings[0])
    values["call_setup_p95_ms"] = None if timings[1] is None else float(timings[1])
    callers = [e for e in endpoints if e.role == "caller"]
    ok = [e for e in callers if e.outcome in GOOD_OUTCOMES]
    values["call_success_rate"] = 100.0 * len(ok) / len(callers) if callers else None
    registered = [e for e in endpoints if e.contact_uri or e.time_to_register_ms is not None]
    values["registration_success_rate"] = (
        100.0 * len(registered) / len(endpoints) if endpoints else None
    )
    return values


class Evaluator:
    def __init__(self, bus: Bus, database_url: str, runs: Any, ingest_wait_s: float = 30) -> None:
        self.bus = bus
        self.database_url = database_url
        self.runs = runs  # the projector's RunsProjection
        self.ingest_wait_s = ingest_wait_s
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.seen: set[str] = set()

    def observe(self, event: Event) -> None:
        """Called for every folded event: queue runs that finished and are not evaluated."""
        run_id = getattr(event, "run_id", None)
        if event.stream != EVENTS.name or not run_id or run_id in self.seen:
            return
        run = self.runs.runs.get(run_id)
        if isinstance(event, RunEvaluated) or (run and run.evaluation is not None):
            self.seen.add(run_id)
        elif run and run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
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

    async def _ingest_drained(self) -> None:
        """Wait (bounded) until metrics-ingest has stored everything published so far."""
        deadline = asyncio.get_running_loop().time() + self.ingest_wait_s
        while asyncio.get_running_loop().time() < deadline:
            try:
                info = await self.bus.js.consumer_info(METRICS.name, "metrics-ingest")
            except NotFoundError:
                return
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.5)

    async def evaluate(self, run_id: str) -> None:
        await self._ingest_drained()
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
        await self.bus.publish(RunEvaluated(
            run_id=run_id, passed=all(r.passed for r in results), results=outcomes, metrics=metrics,
        ))  # fmt: skip
