"""decode -> rows -> one transaction -> ack. Nothing is acked before it is committed.

Messages are MetricBatch (what workers publish: MessagePack, or JSON from
workers before it) or single MetricSample (older workers, integrations). A sample that cannot be stored is dead-lettered alone
with the reason; the other samples of its batch are stored, and the message
is acked once each of its samples is either committed or dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import msgspec
import orjson
import psycopg
from nats.aio.msg import Msg

from callmeter_common import telemetry
from callmeter_common.bus import Bus
from callmeter_events import EventDecodeError, MetricSample, decode, utcnow
from callmeter_events.codec import current_version
from callmeter_events.metric_events import MetricBatch
from callmeter_events.streams import deadletter_subject
from callmeter_storage import partitions
from callmeter_storage.compaction import fold_rollups
from callmeter_storage.rollup_deltas import Rollup
from callmeter_storage.samples import TIME, rows_of, sample_of
from callmeter_vocabulary.sample import SampleRejected, check, decode_batch, is_msgpack

from .writer import store_rows

log = logging.getLogger(__name__)

# Errors that belong to one row, not to the database: the rows are split to find
# the row, which is dead-lettered, and the rest is stored.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, UnicodeError)
# Errors that mean "the database is not there right now": hold and retry.
DOWN_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
_BATCH_VERSION = current_version("MetricBatch")
WHOLE = -1  # the origin of a row that is its whole message (a MetricSample)


@dataclass
class Pending:
    """Decoded messages waiting for one write: rows, where each came from, what to ack."""

    msgs: list[Msg] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    origins: list[tuple[Msg, int]] = field(default_factory=list)  # (message, record index)
    held: set[int] = field(default_factory=set)  # id() of messages not to ack (retry later)
    since: float = 0.0  # when its first message was fetched (time.monotonic)
    # The rows grouped for their rollup deltas as they are decoded (while the previous
    # write is in flight), and how many rows it holds.
    rollup: Rollup = field(default_factory=Rollup)
    rolled: int = 0

    def roll_up(self) -> None:
        """Group the rows decoded since the last call."""
        if len(self.rows) > self.rolled:
            self.rollup.add(self.rows[self.rolled :])
            self.rolled = len(self.rows)


class Ingest:
    def __init__(
        self,
        bus: Bus,
        database_url: str,
        retry_s: float,
        mode: str = "plain",
        fold_every_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.database_url = database_url
        self.retry_s = retry_s
        self.fold_every_s = fold_every_s
        self.pg_down_since: datetime | None = None  # PostgreSQL unreachable since then
        # When the oldest write whose rollup deltas are not folded yet was made; None: all folded.
        self.unfolded_since: float | None = None
        self.partitioned = mode == "plain"
        self.known_days: set[date] = set()
        self.conn: psycopg.Connection[Any] | None = None
        self.stored = 0
        self.dead = 0

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(self.database_url, autocommit=True)
        return self.conn

    async def prepare(self, msgs: list[Msg], into: Pending | None = None) -> Pending:
        """Decode fetched messages into rows; what cannot be stored is dead-lettered now."""
        pending = into if into is not None else Pending()
        if not pending.msgs:
            pending.since = time.monotonic()
        for msg in msgs:
            pending.msgs.append(msg)
            try:
                batch = decode_batch(msg.data)  # the hot path: straight into Samples
                if batch.schema_version != _BATCH_VERSION:
                    raise msgspec.ValidationError("an older MetricBatch: upcast it")
            except (msgspec.ValidationError, msgspec.DecodeError):
                try:
                    await self._add_other(pending, msg)
                except (EventDecodeError, SampleRejected) as exc:
                    if not await self._dead_letter(msg.subject, msg.data, str(exc)):
                        pending.held.add(id(msg))
                continue
            self._add(pending, msg, rows_of(batch.run_id, batch.samples))
        pending.roll_up()
        return pending

    @staticmethod
    def _add(pending: Pending, msg: Msg, rows: list[tuple[Any, ...]], whole: bool = False) -> None:
        pending.rows += rows
        pending.origins += [(msg, WHOLE if whole else i) for i in range(len(rows))]

    async def _add_other(self, pending: Pending, msg: Msg) -> None:
        """Anything but a clean current batch: a current batch with bad records (each is
        dead-lettered alone, the others stored), an older batch (upcast), a MetricSample."""
        try:
            payload = _loads(msg.data)
        except (orjson.JSONDecodeError, msgspec.DecodeError):
            payload = None  # the generic decode names the reason
        if (
            isinstance(payload, dict)
            and payload.get("type") == "MetricBatch"
            and payload.get("schema_version") == _BATCH_VERSION
        ):
            await self._add_records(pending, msg, payload)
            return
        event = decode(msg.data)
        if isinstance(event, MetricBatch):
            self._add(pending, msg, rows_of(event.run_id, event.samples))
        elif isinstance(event, MetricSample):
            self._add(pending, msg, rows_of(event.run_id, [sample_of(event)]), whole=True)
        else:
            raise SampleRejected(f"not a MetricSample: {type(event).__name__}")

    async def _add_records(self, pending: Pending, msg: Msg, payload: dict[str, Any]) -> None:
        run_id, records = payload.get("run_id"), payload.get("samples")
        if not isinstance(run_id, str) or not run_id or "\x00" in run_id:
            raise SampleRejected("run_id: expected text")
        if not isinstance(records, list):
            raise SampleRejected("samples: expected a list of samples")
        for index, record in enumerate(records):
            try:
                row = rows_of(run_id, [check(record)])
            except SampleRejected as exc:
                reason = f"record {index}: {exc}"
                if not await self._dead_letter(msg.subject, _one_record(msg.data, index), reason):
                    pending.held.add(id(msg))
                continue
            pending.rows += row
            pending.origins.append((msg, index))

    async def commit(self, pending: Pending) -> None:
        """Store the rows (retrying while Postgres is down), then ack: never before."""
        if pending.rows:
            # callmeter.metrics.<run>.…: the run each message belongs to, for its trace
            runs = {m.subject.split(".")[2] for m in pending.msgs}
            for msg in pending.msgs:
                telemetry.remember(msg.subject.split(".")[2], msg.headers)
            with telemetry.handling("metrics-ingest", "store samples", runs):
                await self._store(pending, list(range(len(pending.rows))))
        for msg in pending.msgs:
            if id(msg) not in pending.held:
                await msg.ack()
        since = self.unfolded_since
        if since is not None and time.monotonic() - since >= self.fold_every_s:
            await self.fold()

    async def fold(self) -> None:
        """Fold the rollup deltas written so far (compaction.py). Under load every
        fold_every_s, and whenever ingest is idle; readers see the same figures
        either way, folding keeps their queries small. A failure waits for the next."""
        try:
            await asyncio.to_thread(self._fold)
        except psycopg.Error as exc:
            log.warning("folding the rollups failed (%s); trying again later", exc)
            self.conn = None

    def _fold(self) -> None:
        # Runs where a write would: none is in flight. None: another ingest process is
        # folding, and its fold may have begun before this one's last write committed;
        # so this one's deltas count as folded only once a fold of its own has run.
        if fold_rollups(self._connection()) is not None:
            self.unfolded_since = None

    async def _dead_letter(self, subject: str, data: bytes, reason: str) -> bool:
        """Park what cannot be stored, with the reason; False if NATS would not take it."""
        headers = {"CallMeter-Reason": reason[:500], "CallMeter-Service": self.bus.service}
        try:
            await self.bus.js.publish(
                deadletter_subject(self.bus.service, subject), data, headers=headers
            )
        except Exception:  # noqa: BLE001 - NATS trouble: leave it unacked, it comes back
            log.exception("could not dead-letter from %s; it will be redelivered", subject)
            return False
        log.warning("dead-lettered from %s: %s", subject, reason)
        self.dead += 1
        return True

    async def _store(self, pending: Pending, which: list[int]) -> None:
        """Write until it works: the rows are committed or dead-lettered when this returns."""
        last_touch = time.monotonic()
        while True:
            try:
                await self._write_isolating(pending, which)
                if self.pg_down_since is not None:  # back: the outage is named for the runs
                    self.bus.outage_ended("postgres", self.pg_down_since)
                    self.pg_down_since = None
                    asyncio.ensure_future(self.bus.report_outages())
                return
            except DOWN_ERRORS as exc:
                # Backpressure: keep the messages unacked and retry until Postgres is back;
                # JetStream stops sending once max_ack_pending is reached.
                log.warning("postgres unavailable (%s); retrying in %.1fs", exc, self.retry_s)
                self.pg_down_since = self.pg_down_since or utcnow()
                self.conn = None
                if time.monotonic() - last_touch > 10:  # well inside ack_wait
                    last_touch = time.monotonic()
                    for msg in pending.msgs:
                        await msg.in_progress()
                await asyncio.sleep(self.retry_s)

    async def _write_isolating(self, pending: Pending, which: list[int]) -> None:
        try:
            whole = len(which) == len(pending.rows)
            rows = pending.rows if whole else [pending.rows[i] for i in which]
            rollup = pending.rollup if whole and pending.rolled == len(rows) else None
            stored = await asyncio.to_thread(self._write, rows, rollup)
            self.stored += stored
            if stored and self.unfolded_since is None:
                self.unfolded_since = time.monotonic()
            return
        except ROW_ERRORS as exc:
            if len(which) == 1:
                msg, record = pending.origins[which[0]]
                data = msg.data if record == WHOLE else _one_record(msg.data, record)
                reason = f"rejected by the database: {exc}"
                if not await self._dead_letter(msg.subject, data, reason):
                    pending.held.add(id(msg))
                return
        # Bisect: log2(rows) extra writes find each bad row; good halves commit.
        half = len(which) // 2
        await self._write_isolating(pending, which[:half])
        await self._write_isolating(pending, which[half:])

    def _write(self, rows: list[tuple[Any, ...]], rollup: Rollup | None) -> int:
        conn = self._connection()
        if self.partitioned:
            missing = partitions.days_of({r[TIME] for r in rows}) - self.known_days
            if missing:
                partitions.ensure_days(conn, missing)
                self.known_days |= missing
        return store_rows(conn, rows, None if rollup is None else rollup.deltas())


def _loads(data: bytes) -> Any:
    """A message's payload as parsed, whichever its format (is_msgpack)."""
    return msgspec.msgpack.decode(data) if is_msgpack(data) else orjson.loads(data)


def _one_record(data: bytes, index: int) -> bytes:
    """The batch `data` holding only record `index`, in its format: what is dead-lettered
    for one bad sample."""
    payload = _loads(data)
    records = payload.get("samples")
    one = {**payload, "samples": [records[index]] if records else []}
    return msgspec.msgpack.encode(one) if is_msgpack(data) else orjson.dumps(one)
