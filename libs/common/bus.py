"""The NATS JetStream bus every service uses: publish with dedup, fold, pull, dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from callmeter_events import ALL_STREAMS, Event, EventDecodeError, StreamDef, decode, encode
from callmeter_events.streams import deadletter_subject

from . import telemetry

log = logging.getLogger(__name__)

FoldHandler = Callable[[int, Event], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Msg, Event]]], Awaitable[None]]


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext
    service: str

    @classmethod
    async def connect(cls, url: str, service: str) -> Bus:
        nc = await nats.connect(
            url, name=f"callmeter-{service}", max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        return cls(nc, nc.jetstream(timeout=10), service)

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (finish in-flight work), but never hang a shutdown on it."""
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout)
        except (TimeoutError, nats.errors.Error):
            # A pull subscription's internal queue can keep drain() waiting forever.
            await self.nc.close()

    async def ensure_streams(self, streams: Sequence[StreamDef] = ALL_STREAMS) -> None:
        """Create or update the streams; safe to call from every service at start-up."""
        for sd in streams:
            config = api.StreamConfig(
                name=sd.name,
                subjects=list(sd.subjects),
                max_age=float(sd.max_age_s),
                duplicate_window=float(sd.duplicate_window_s),
                storage=api.StorageType.FILE,
            )
            try:
                await self.js.stream_info(sd.name)
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)

    async def publish(self, event: Event) -> int:
        """Publish with a deterministic Nats-Msg-Id; returns the stream sequence."""
        run_id = getattr(event, "run_id", None)
        headers = telemetry.publish_headers(self.service, type(event).__name__, run_id)
        headers["Nats-Msg-Id"] = event.msg_id()
        ack = await self.js.publish(event.subject(), encode(event), headers=headers)
        return int(ack.seq)

    async def publish_many(self, events: Sequence[Event], concurrency: int = 256) -> None:
        """Publish many events concurrently (order across events is not kept)."""
        gate = asyncio.Semaphore(concurrency)

        async def one(event: Event) -> None:
            async with gate:
                await self.publish(event)

        await asyncio.gather(*(one(e) for e in events))

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Park a message this service cannot handle, with the reason, and move on."""
        headers = {"CallMeter-Reason": reason[:500], "CallMeter-Service": self.service}
        await self.js.publish(
            deadletter_subject(self.service, msg.subject), msg.data, headers=headers
        )
        log.warning("dead-lettered %s: %s", msg.subject, reason)

    async def put_object(self, bucket: str, name: str, data: bytes) -> None:
        """Store a blob in a JetStream object store bucket (created on first use)."""
        try:
            store = await self.js.object_store(bucket)
        except NotFoundError:
            store = await self.js.create_object_store(bucket)
        await store.put(name, data)

    async def get_object(self, bucket: str, name: str) -> bytes | None:
        """A blob from an object store bucket; None when the bucket or the object is absent."""
        try:
            store = await self.js.object_store(bucket)
            result = await store.get(name)
        except NotFoundError:  # ObjectNotFoundError and BucketNotFoundError are NotFoundErrors
            return None
        return bytes(result.data or b"")

    async def has_object(self, bucket: str, name: str) -> bool:
        try:
            store = await self.js.object_store(bucket)
            await store.get_info(name)
        except NotFoundError:
            return False
        return True

    async def last_seq(self, stream: str) -> int:
        info = await self.js.stream_info(stream)
        return int(info.state.last_seq)

    async def fold(
        self,
        stream: StreamDef,
        start_seq: int,
        handler: FoldHandler,
        deliver_policy: api.DeliverPolicy = api.DeliverPolicy.BY_START_SEQUENCE,
        subject: str | None = None,
    ) -> JetStreamContext.PushSubscription:
        """Feed every event of `stream` (or only those on `subject`) from `start_seq`
        on to `handler`, in order, live.

        Projections keep their own position (in memory or next to their rows), so an
        ordered consumer is the right tool: no acks, no server-side state to lose.
        A payload that does not decode is dead-lettered and skipped.
        """

        async def on_msg(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            try:
                event = decode(msg.data)
            except EventDecodeError as exc:
                await self.dead_letter(msg, str(exc))
                return
            telemetry.remember(getattr(event, "run_id", None), msg.headers)
            telemetry.meters().events_handled.add(
                1, {"service": self.service, "type": type(event).__name__}
            )
            await handler(seq, event)

        config = api.ConsumerConfig(deliver_policy=deliver_policy)
        if deliver_policy == api.DeliverPolicy.BY_START_SEQUENCE:
            config.opt_start_seq = max(1, start_seq)
        if subject is None:
            subject = stream.subjects[0] if len(stream.subjects) == 1 else ">"
        return await self.js.subscribe(
            subject,
            stream=stream.name,
            cb=on_msg,
            ordered_consumer=True,
            config=config,
            pending_msgs_limit=1_000_000,
        )

    async def pull_loop(
        self,
        stream: StreamDef,
        durable: str,
        filters: Sequence[str],
        handler: BatchHandler,
        stop: asyncio.Event,
        batch: int = 256,
        max_deliver: int = 20,
        ack_wait_s: float = 30,
    ) -> None:
        """Durable pull consumer: fetch batches, decode, hand over; the handler acks.

        Undecodable messages go to the dead-letter subject and are acked here, so a
        bad payload never blocks the batch behind it.
        """
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_deliver=max_deliver,
            ack_wait=ack_wait_s,
            filter_subjects=list(filters),
            max_ack_pending=batch * 40,
        )
        await self.js.add_consumer(stream.name, config)
        sub = await self.js.pull_subscribe_bind(durable, stream=stream.name)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except Exception:
                    # e.g. the server restarting: keep pulling once it is back.
                    log.exception("%s: fetch from %s failed", self.service, durable)
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    continue  # a fetch can come back empty (status-only reply)
                m = telemetry.meters()
                m.batch_size.record(len(msgs), {"service": self.service})
                m.consumer_lag.record(msgs[-1].metadata.num_pending, {"service": self.service})
                m.events_handled.add(len(msgs), {"service": self.service})
                good: list[tuple[Msg, Event]] = []
                for msg in msgs:
                    try:
                        good.append((msg, decode(msg.data)))
                    except EventDecodeError as exc:
                        await self.dead_letter(msg, str(exc))
                        await msg.ack()
                if good:
                    run_ids = [r for _, e in good if (r := getattr(e, "run_id", None))]
                    for msg, event in good:
                        telemetry.remember(getattr(event, "run_id", None), msg.headers)
                    try:
                        with telemetry.handling(self.service, "handle batch", run_ids):
                            await handler(good)
                    except Exception:
                        # Unacked messages come back after ack_wait; one failure must not
                        # end the loop, or the service would go silently deaf.
                        log.exception("%s: handling a batch of %d failed", self.service, len(good))
                        for msg, _ in good:
                            with contextlib.suppress(Exception):
                                await msg.nak(delay=1)
        finally:
            # Unsubscribed, the connection can drain at shutdown without waiting on it.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
