"""Replay speed: a stored 5-minute run with 16 endpoints, replayed as fast as possible.

Publishes a realistic run history (lifecycle events plus one sample per endpoint
per second per direction) into the project's own NATS, then times `read_run` +
`replay` at max speed to a replay prefix while a subscriber folds the replayed
events; checks the folded views equal the ones folded from the original events.
Target: under 10 s. Prints the time and, as a baseline measured in the same run,
the time to merely read the stored messages back.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from callmeter_cli.replay import read_run, replay
from callmeter_common.bus import Bus
from callmeter_common.servers import start_nats
from callmeter_events import (
    CallEstablished,
    EndpointFinished,
    EndpointPhaseChanged,
    Event,
    MetricSample,
    RunCompleted,
    RunCreated,
    RunQueued,
    RunStarted,
    TestDefinition,
    decode,
)
from callmeter_projections import RunsProjection
from callmeter_storage.readmodels import doc
from callmeter_vocabulary.metrics import KEYS

ENDPOINTS, SECONDS = 16, 300


def history(run_id: str) -> list[Event]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    definition = TestDefinition(
        name="bench",
        duration_s=SECONDS,
        groups=[{"name": "A", "endpoints": 8, "calls": "B"}, {"name": "B", "endpoints": 8}],
    )
    events: list[Event] = [
        RunCreated(run_id=run_id, test_id="t", definition=definition, occurred_at=at(0)),
        RunQueued(run_id=run_id, occurred_at=at(0.1)),
        RunStarted(run_id=run_id, occurred_at=at(0.2)),
    ]
    eps = [f"{g}-{i}" for g in "AB" for i in range(1, 9)]
    metrics = dict.fromkeys(KEYS, 1.0) | {"codec": "PCMU"}
    for ep in eps:
        events += [
            EndpointPhaseChanged(run_id=run_id, endpoint_id=ep, phase=p, occurred_at=at(1))
            for p in ("INITIALIZING", "CALLING", "INCALL")
        ]
        events.append(
            CallEstablished(run_id=run_id, endpoint_id=ep, codec="PCMU", occurred_at=at(1.5))
        )
    for s in range(SECONDS):
        for ep in eps:
            for direction in ("send", "recv"):
                events.append(
                    MetricSample(
                        run_id=run_id,
                        endpoint_id=ep,
                        direction=direction,
                        seq=s,
                        ts=at(2 + s),
                        metrics=metrics,
                        occurred_at=at(2 + s),
                    )
                )
    events += [
        EndpointFinished(
            run_id=run_id, endpoint_id=ep, outcome="SUCCESS", occurred_at=at(SECONDS + 3)
        )
        for ep in eps
    ]
    events.append(RunCompleted(run_id=run_id, occurred_at=at(SECONDS + 4)))
    return events


def fold(events: list[Event], run_id: str) -> tuple[object, object]:
    p = RunsProjection()
    for i, e in enumerate(events, 1):
        if e.stream == "CALLMETER_EVENTS":
            p.apply(i, e)
    return doc(p.runs[run_id]), {k: doc(v) for k, v in p.endpoints[run_id].items()}


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    server = start_nats(data)
    try:
        bus = await Bus.connect(server.url, "bench")
        await bus.ensure_streams()
        run_id = "benchrun"
        events = history(run_id)
        await bus.publish_many(events)
        t = time.perf_counter()
        recorded = await read_run(bus, run_id)
        read_s = time.perf_counter() - t
        got: list[bytes] = []
        done = asyncio.Event()

        async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
            got.append(msg.data)
            if len(got) == len(recorded):
                done.set()

        await bus.nc.subscribe(f"replay.{run_id}.>", cb=on_msg, pending_msgs_limit=-1)
        t = time.perf_counter()
        await replay(bus, recorded, f"replay.{run_id}", speed=0)
        await asyncio.wait_for(done.wait(), 60)
        replay_s = time.perf_counter() - t
        same = fold([decode(d) for d in got], run_id) == fold(events, run_id)
        await bus.close()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    print(f"stored run: {ENDPOINTS} endpoints x {SECONDS} s = {len(events)} messages")
    print(f"read back from JetStream: {read_s:.2f} s")
    print(
        f"replay at max speed (publish + receive): {replay_s:.2f} s; total {read_s + replay_s:.2f} s (target < 10 s)"
    )
    print(f"views folded from the replay equal the original: {same}")


if __name__ == "__main__":
    asyncio.run(main())
