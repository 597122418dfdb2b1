"""Example integration: follow one run's events live with nats-py.

    python examples/subscribe_run.py nats://127.0.0.1:4222 <run_id>

Subjects and payloads are documented in docs/asyncapi.json (served at /asyncapi).
Uses a JetStream ordered consumer so it also receives what happened before it
started; use a plain `nc.subscribe` for live-only.
"""

import asyncio
import json
import sys

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy


async def main(url: str, run_id: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    finished = asyncio.Event()

    async def on_event(msg):
        event = json.loads(msg.data)
        print(msg.metadata.sequence.stream, event["type"], msg.subject)
        if event["type"] in ("RunCompleted", "RunFailed", "RunRejected"):
            finished.set()

    await js.subscribe(
        f"callmeter.run.{run_id}.>",
        cb=on_event,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    await finished.wait()
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
