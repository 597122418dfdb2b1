"""The project's pull loop against FastStream's NATS subscriber, on the same work.

    python bench/bus.py [--events 50000] [--batch 256] [--rounds 3]

Both sides consume the same stream of real events (EndpointPhaseChanged, as
workers publish them) through a fresh durable pull consumer with explicit acks,
in one process, with the same batch size; both decode every payload with the
project's codec and ack every message. Printed: events per second for each,
the median of `--rounds` alternating rounds, and the ratio bus / FastStream.
FastStream was a declared dependency that nothing imported; this is the
measurement behind removing it (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_common.servers import start_nats
from callmeter_events import EndpointPhaseChanged, StreamDef, decode, encode

STREAM = StreamDef("BENCH_BUS", ("bench.>",), max_age_s=3600)


async def fill(url: str, events: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name=STREAM.name, subjects=list(STREAM.subjects)))
    payload = encode(EndpointPhaseChanged(run_id="r1", endpoint_id="A-1", phase="INCALL"))
    pending = []
    for i in range(events):
        pending.append(js.publish(f"bench.{i % 64}", payload))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await nc.close()


async def unacked(url: str, durable: str) -> int:
    """Messages the consumer still waits an ack for, or has not delivered: 0 when all done."""
    nc = await nats.connect(url)
    await asyncio.sleep(0.5)  # acks are fire-and-forget publishes
    info = await nc.jetstream().consumer_info(STREAM.name, durable)
    await nc.close()
    return int(info.num_ack_pending) + int(info.num_pending)


async def consume_bus(url: str, events: int, batch: int, durable: str) -> float:
    bus = await Bus.connect(url, "bench")
    stop = asyncio.Event()
    seen = 0

    async def handler(items: list) -> None:  # type: ignore[type-arg]
        nonlocal seen
        for msg, _event in items:
            await msg.ack()
        seen += len(items)
        if seen >= events:
            stop.set()

    start = time.perf_counter()
    await bus.pull_loop(STREAM, durable, ["bench.>"], handler, stop, batch=batch)
    elapsed = time.perf_counter() - start
    await bus.close()
    return events / elapsed


async def consume_faststream(url: str, events: int, batch: int, durable: str) -> float:
    from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

    broker = NatsBroker(url, logger=None)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(
        "bench.>",
        stream=JStream(STREAM.name, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=batch, timeout=0.5, batch=True),
    )
    async def handler(msg: NatsMessage) -> None:
        nonlocal seen
        raws = msg.raw_message  # the batch's nats Msgs; decoded by our codec, as on our side
        for raw in raws:
            decode(raw.data)
        seen += len(raws)
        if seen >= events:
            done.set()

    start = time.perf_counter()
    await broker.start()
    await done.wait()
    elapsed = time.perf_counter() - start
    await broker.stop()
    return events / elapsed


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cm-bench-bus-") as tmp:
        server = start_nats(Path(tmp) / "nats")
        try:
            await fill(server.url, args.events)
            ours: list[float] = []
            theirs: list[float] = []
            for r in range(args.rounds):
                ours.append(await consume_bus(server.url, args.events, args.batch, f"b{r}"))
                theirs.append(
                    await consume_faststream(server.url, args.events, args.batch, f"f{r}")
                )
                for durable in (f"b{r}", f"f{r}"):
                    if left := await unacked(server.url, durable):
                        raise SystemExit(f"{durable}: {left} messages not acked")
                print(f"round {r + 1}: bus {ours[-1]:,.0f}/s  faststream {theirs[-1]:,.0f}/s")
        finally:
            server.stop()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.events:,} events, batch {args.batch}, median of {args.rounds} rounds")
    print(f"bus (callmeter_common.bus.pull_loop)   {a:,.0f} events/s")
    print(f"FastStream NatsBroker pull subscriber  {b:,.0f} events/s")
    print(f"ratio bus / FastStream: {a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
