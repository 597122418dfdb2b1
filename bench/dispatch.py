"""Dispatch benchmarks: allocation of 10,000 endpoints over 50 workers, and the speed of
rebuilding run state from the log, as a ratio to plain decoding of the same events.

    python bench/dispatch.py [--events 1000000] [--endpoints-per-run 100]

The rebuild ratio is (decode + fold) rate / decode-only rate: 1.0 would mean the
fold is free; the gap is the projection's own cost.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from callmeter_common.reconciler import World
from callmeter_dispatcher.allocation import GroupDemand, WorkerSlot, allocate
from callmeter_dispatcher.dispatch import Timing, decide
from callmeter_events import (
    CallEnded,
    CallEstablished,
    CallProgress,
    EndpointAssigned,
    EndpointConfig,
    EndpointFinished,
    EndpointPhaseChanged,
    EndpointRegistered,
    Event,
    RunCompleted,
    RunCreated,
    RunDispatching,
    RunQueued,
    RunStarted,
    TestDefinition,
    WorkerOnline,
    decode,
    encode,
)
from callmeter_projections import RunsProjection

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def bench_allocation(endpoints: int = 10_000, workers: int = 50, rounds: int = 5) -> None:
    slots = [WorkerSlot(f"w{i:02d}", "eu", endpoints // workers + 10) for i in range(workers)]
    half = endpoints // 2
    demands = [
        GroupDemand("A", tuple(f"A-{i}" for i in range(1, half + 1))),
        GroupDemand("B", tuple(f"B-{i}" for i in range(1, endpoints - half + 1))),
    ]
    best = min(_timed(lambda: allocate(demands, slots)) for _ in range(rounds))
    print(f"allocate: {endpoints:,} endpoints over {workers} workers in {best * 1e3:.1f} ms")

    # The whole dispatcher decision for a queued run of that size (plan + nothing else).
    world = World()
    for i, s in enumerate(slots, 1):
        world.apply(i, WorkerOnline(worker_id=s.worker_id, capacity=s.free, occurred_at=T0))
    d = TestDefinition.model_validate(
        {
            "name": "big",
            "duration_s": 60,
            "groups": [
                {"name": "A", "endpoints": half, "calls": "B"},
                {"name": "B", "endpoints": endpoints - half},
            ],
        }
    )
    world.apply(1, RunCreated(run_id="r", test_id="t", definition=d, occurred_at=T0))
    world.apply(2, RunQueued(run_id="r", occurred_at=T0))
    t = _timed(lambda: list(decide(world, T0, Timing())))
    print(f"dispatcher decide (plan a queued {endpoints:,}-endpoint run): {t * 1e3:.1f} ms")


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_events(run_no: int, per_run: int) -> Iterator[Event]:
    """What a real run writes: lifecycle, then ~14 events per endpoint, then completion."""
    run_id, at = f"run{run_no:06d}", T0 + timedelta(minutes=run_no)
    half = per_run // 2
    d = TestDefinition.model_validate(
        {
            "name": "bench",
            "duration_s": 30,
            "groups": [
                {"name": "A", "endpoints": half, "calls": "B"},
                {"name": "B", "endpoints": per_run - half},
            ],
        }
    )
    eps = [f"A-{i}" for i in range(1, half + 1)] + [f"B-{i}" for i in range(1, per_run - half + 1)]
    plan = {e: f"w{i % 10}" for i, e in enumerate(eps)}
    yield RunCreated(run_id=run_id, test_id="t", definition=d, occurred_at=at)
    yield RunQueued(run_id=run_id, occurred_at=at)
    yield RunDispatching(run_id=run_id, worker_ids=sorted(set(plan.values())), plan=plan)
    yield RunStarted(run_id=run_id, occurred_at=at)
    for ep in eps:
        caller = ep.startswith("A")
        base = {"run_id": run_id, "endpoint_id": ep, "occurred_at": at}
        config = EndpointConfig(
            group=ep[0],
            role="caller" if caller else "receiver",
            codecs=["PCMU"],
            duration_s=30,
            username=ep.lower(),
        )
        yield EndpointAssigned(run_id=run_id, endpoint_id=ep, worker_id=plan[ep], config=config)
        yield EndpointPhaseChanged(**base, phase="INITIALIZING")
        yield EndpointRegistered(
            **base, contact_uri=f"sip:{ep}@10.0.0.1:5060", time_to_register_ms=3.2
        )
        yield EndpointPhaseChanged(**base, phase="REGISTERED")
        yield EndpointPhaseChanged(**base, phase="CALLING" if caller else "RINGING")
        yield CallProgress(**base, sip_code=180, reason="Ringing", ms_since_invite=12.0)
        yield EndpointPhaseChanged(**base, phase="NEGOTIATING")
        yield CallEstablished(
            **base,
            codec="PCMU",
            time_to_trying_ms=1.0,
            time_to_ringing_ms=12.0,
            post_dial_delay_ms=12.0,
            call_setup_ms=20.0,
        )
        yield EndpointPhaseChanged(**base, phase="INCALL")
        yield EndpointPhaseChanged(**base, phase="DISCONNECTING")
        yield CallEnded(**base, sip_code=200, reason="Normal call clearing", duration_s=30.0)
        yield EndpointPhaseChanged(**base, phase="CLOSED")
        yield EndpointFinished(**base, outcome="SUCCESS")
    yield RunCompleted(run_id=run_id, occurred_at=at)


def make_log(total: int, per_run: int) -> list[bytes]:
    log: list[bytes] = []
    run_no = 0
    while len(log) < total:
        run_no += 1
        log.extend(encode(e) for e in run_events(run_no, per_run))
    return log[:total]


def bench_rebuild(total: int, per_run: int) -> None:
    t0 = time.perf_counter()
    log = make_log(total, per_run)
    print(f"generated {len(log):,} encoded events in {time.perf_counter() - t0:.1f} s")
    n = len(log)
    gc.collect()
    gc.freeze()  # the generated log is long-lived: keep it out of every collection

    # Both passes stream the log the way a rebuild does; neither keeps decoded events
    # (a list of a million models would time the garbage collector, not the code).
    t0 = time.perf_counter()
    for raw in log:
        decode(raw)
    t_decode = time.perf_counter() - t0

    t0 = time.perf_counter()
    p = RunsProjection()
    for seq, raw in enumerate(log, 1):
        p.apply(seq, decode(raw))
    t_rebuild = time.perf_counter() - t0

    sample = [decode(raw) for raw in log[: min(n, 200_000)]]
    t0 = time.perf_counter()
    q = RunsProjection()
    for seq, event in enumerate(sample, 1):
        q.apply(seq, event)
    t_fold = time.perf_counter() - t0

    completed = sum(1 for r in p.runs.values() if r.status == "COMPLETED")
    print(f"decode only:     {n / t_decode:10,.0f} events/s")
    print(
        f"rebuild:         {n / t_rebuild:10,.0f} events/s  (decode + fold; {len(p.runs):,} runs, "
        f"{completed:,} completed)"
    )
    print(
        f"fold alone:      {len(sample) / t_fold:10,.0f} events/s  (first {len(sample):,}, pre-decoded)"
    )
    print(f"rebuild / decode ratio: {t_decode / t_rebuild:.2f}  (1.00 = the fold costs nothing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--endpoints-per-run", type=int, default=100)
    args = ap.parse_args()
    bench_allocation()
    bench_rebuild(args.events, args.endpoints_per_run)


if __name__ == "__main__":
    main()
