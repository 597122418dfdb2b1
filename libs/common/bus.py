"""The NATS JetStream bus every service uses: publish with dedup, fold, pull, dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError

from callmeter_events import (
    ALL_STREAMS,
    COMPONENT_NAMES,
    Event,
    EventDecodeError,
    PlatformOutage,
    StreamDef,
    decode,
    encode,
    utcnow,
)
from callmeter_events.streams import deadletter_subject

from . import telemetry
from .settings import CommonSettings

log = logging.getLogger(__name__)

# How long a publish keeps trying while NATS is unreachable or refuses (e.g. store full),
# or while a stream elects a new leader and the client moves to another node: retried
# with the same Nats-Msg-Id, so JetStream keeps one copy.
PUBLISH_PATIENCE_S = 120.0
TRANSIENT_PUBLISH_ERRORS = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    NoStreamResponseError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    ServiceUnavailableError,
)

FoldHandler = Callable[[int, Event], Awaitable[None]]
T = TypeVar("T")
BatchHandler = Callable[[list[tuple[Msg, Event]]], Awaitable[None]]


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext
    service: str
    # Since when NATS is unreachable from here (None: connected), and the outages seen
    # here that are not published yet (they are, once NATS is back).
    nats_down_since: datetime | None = None
    unreported: list[PlatformOutage] = field(default_factory=list)
    reported_seq: int = 0  # stream sequence of the last outage published from here
    refusing: bool = False  # nats_down_since was set by refused publishes, not a disconnect

    publish_retry_s: float = 60.0  # how long a publish keeps trying through a failover

    @classmethod
    async def connect(cls, url: str, service: str) -> Bus:
        bus: Bus | None = None

        async def disconnected() -> None:
            if bus is not None and bus.refusing:
                bus.refusing = False  # refused, then disconnected: one outage
            if bus is not None and bus.nats_down_since is None and not bus.nc.is_closed:
                bus.nats_down_since = utcnow()
                log.warning("%s: NATS unreachable; reconnecting", service)

        async def reconnected() -> None:
            if bus is not None and bus.nats_down_since is not None:
                bus.refusing = False
                bus.outage_ended("nats", bus.nats_down_since)
                bus.nats_down_since = None
                log.warning("%s: NATS reachable again", service)
                asyncio.ensure_future(bus.report_outages())

        nc = await nats.connect(
            server_urls(url),
            name=f"callmeter-{service}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
        bus = cls(nc, nc.jetstream(timeout=10), service)
        return bus

    @property
    def degraded(self) -> bool:
        """NATS unreachable now, or an outage seen here not published yet."""
        return self.nats_down_since is not None or bool(self.unreported)

    def outage_ended(self, component: Literal["nats", "postgres"], since: datetime) -> None:
        """Remember an outage this service saw; `report_outages` publishes it."""
        self.unreported.append(
            PlatformOutage(
                component=component, reporter=self.service, started_at=since, ended_at=utcnow()
            )
        )

    async def report_outages(self) -> int:
        """Publish the outages seen here; the highest stream sequence (0: none published)."""
        seq = 0
        for outage in list(self.unreported):
            try:
                seq = max(seq, await self.publish(outage, patience_s=5))
                self.reported_seq = max(self.reported_seq, seq)
            except Exception:  # noqa: BLE001 - NATS trouble again: tried again later
                log.warning("%s: could not report %s yet", self.service, outage.msg_id())
                return seq
            with contextlib.suppress(ValueError):
                self.unreported.remove(outage)
            name = COMPONENT_NAMES[outage.component]
            log.warning(
                "%s: reported %s unreachable from %s to %s",
                self.service,
                name,
                f"{outage.started_at:%H:%M:%S}",
                f"{outage.ended_at:%H:%M:%S}",
            )
        return seq

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (finish in-flight work), but never hang a shutdown on it."""
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout)
        except (TimeoutError, nats.errors.Error):
            # A pull subscription's internal queue can keep drain() waiting forever.
            await self.nc.close()

    async def ensure_streams(
        self, streams: Sequence[StreamDef] = ALL_STREAMS, replicas: int | None = None
    ) -> None:
        """Create or update the streams; safe to call from every service at start-up.

        `replicas` (default CALLMETER_STREAM_REPLICAS) copies of each stream: 3 on a
        3-node cluster, so one node can die without losing a message or a consumer.
        """
        replicas = replicas or CommonSettings().stream_replicas
        for sd in streams:
            config = api.StreamConfig(
                name=sd.name,
                subjects=list(sd.subjects),
                max_age=float(sd.max_age_s),
                duplicate_window=float(sd.duplicate_window_s),
                storage=api.StorageType.FILE,
                num_replicas=replicas,
            )
            await self.patiently(
                f"stream {sd.name}", functools.partial(self._ensure_stream, config)
            )

    async def patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, tried again while NATS answers with a transient error (a cluster
        still electing a stream's leader, busy with another service's update) for up to
        publish_retry_s. Only for calls that change nothing when they fail."""
        deadline = asyncio.get_running_loop().time() + self.publish_retry_s
        while True:
            try:
                return await call()
            except TRANSIENT_PUBLISH_ERRORS as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("%s: %r; trying again", what, exc)
                await asyncio.sleep(0.5)

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        """Add the stream, or update it when its config differs (a cluster applies an
        update through its meta leader: not something every service start should do)."""
        try:
            have = (await self.js.stream_info(config.name or "")).config
        except NotFoundError:
            await self.js.add_stream(config)
            return
        fields = ("subjects", "max_age", "duplicate_window", "storage", "num_replicas")
        if any(getattr(have, f) != getattr(config, f) for f in fields):
            await self.js.update_stream(config)

    async def publish(self, event: Event, patience_s: float = PUBLISH_PATIENCE_S) -> int:
        """Publish with a deterministic Nats-Msg-Id; returns the stream sequence.

        While NATS restarts (or its store is full) the publish is retried for up to
        `patience_s`: the same Nats-Msg-Id each time, so a retry never duplicates.
        """
        run_id = getattr(event, "run_id", None)
        headers = telemetry.publish_headers(self.service, type(event).__name__, run_id)
        headers["Nats-Msg-Id"] = event.msg_id()
        data, deadline, logged = encode(event), time.monotonic() + patience_s, False
        while True:
            try:
                ack = await self.js.publish(event.subject(), data, headers=headers)
            except TRANSIENT_PUBLISH_ERRORS as exc:
                # Connected but refused (e.g. its store's disk is full) is an outage too.
                if self.nats_down_since is None and self.nc.is_connected:
                    self.nats_down_since = utcnow()
                    self.refusing = True
                if self.nc.is_closed or time.monotonic() > deadline:
                    raise
                if not logged:
                    log.warning(
                        "%s: publish of %s held: %r; retrying",
                        self.service,
                        type(event).__name__,
                        exc,
                    )
                    logged = True
                await asyncio.sleep(0.5)
                continue
            if self.refusing and self.nats_down_since is not None:
                self.refusing = False
                self.outage_ended("nats", self.nats_down_since)
                self.nats_down_since = None
                log.warning("%s: NATS accepts publishes again", self.service)
                if not isinstance(event, PlatformOutage):
                    asyncio.ensure_future(self.report_outages())
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
        caught_up: asyncio.Event | None = None,
        skip: Callable[[str], bool] | None = None,
    ) -> JetStreamContext.PushSubscription:
        """Feed every event of `stream` (or only those on `subject`) from `start_seq`
        on to `handler`, in order, live; messages whose subject `skip` names are passed
        over undecoded.

        Projections keep their own position (in memory or next to their rows), so an
        ordered consumer is the right tool: no acks, no server-side state to lose.
        A payload that does not decode is dead-lettered and skipped.

        `caught_up` is set once the handler has had every message the stream held
        when the fold started. Told by the consumer (nothing pending), not by the
        stream's last sequence: purging a deleted run's subjects can remove the
        stream's tail, and a sequence that no longer exists never arrives.
        """

        async def on_msg(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            if skip is not None and skip(msg.subject):
                if caught_up is not None and msg.metadata.num_pending == 0:
                    caught_up.set()
                return
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
            if caught_up is not None and msg.metadata.num_pending == 0:
                caught_up.set()

        config = api.ConsumerConfig(deliver_policy=deliver_policy)
        if deliver_policy == api.DeliverPolicy.BY_START_SEQUENCE:
            config.opt_start_seq = max(1, start_seq)
        if subject is None:
            subject = stream.subjects[0] if len(stream.subjects) == 1 else ">"
        sub = await self.js.subscribe(
            subject,
            stream=stream.name,
            cb=on_msg,
            ordered_consumer=True,
            # Silent this long twice: the consumer is recreated (e.g. on a new stream
            # leader after its node died); nats-py's default would take 10 s.
            idle_heartbeat=1.0,
            config=config,
            pending_msgs_limit=1_000_000,
        )
        if caught_up is not None:
            info = await self.patiently("fold", sub.consumer_info)
            # Nothing to deliver and nothing delivered: there was nothing to fold. (If
            # something was delivered, the last one said "0 pending" and sets it.)
            if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                caught_up.set()
        return sub

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
        linger_s: float = 0.0,
    ) -> None:
        """Durable pull consumer: fetch batches, decode, hand over; the handler acks.

        Undecodable messages go to the dead-letter subject and are acked here, so a
        bad payload never blocks the batch behind it. With `linger_s`, a batch smaller
        than `batch` is followed by that pause, so that a trickle of messages (tens a
        second) reaches the handler as a few batches rather than one message each.
        """
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_deliver=max_deliver,
            ack_wait=ack_wait_s,
            filter_subjects=list(filters),
            max_ack_pending=batch * 40,
        )
        # (both idempotent: tried again through a cluster's elections at start-up)
        await self.patiently(durable, functools.partial(self.js.add_consumer, stream.name, config))
        sub = await self.patiently(
            durable, functools.partial(self.js.pull_subscribe_bind, durable, stream=stream.name)
        )
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
                if linger_s and len(msgs) < batch:
                    await asyncio.sleep(linger_s)
        finally:
            # Unsubscribed, the connection can drain at shutdown without waiting on it.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def server_urls(url: str) -> list[str]:
    """The NATS servers in a comma-separated CALLMETER_NATS_URL."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ValueError("CALLMETER_NATS_URL: no NATS server URL given")
    return urls
