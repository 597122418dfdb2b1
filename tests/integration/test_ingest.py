"""metrics-ingest against a real NATS and a real PostgreSQL: bad samples, Postgres
down for 10 s, kill -9 of the service. Samples are published to JetStream as
workers publish them (MetricBatch, through the worker's SampleBatcher) and, for
older workers and integrations, one MetricSample per message (no pjsua2 needed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest

from callmeter_common.bus import Bus
from callmeter_common.procs import free_port, spawn, stop_group
from callmeter_common.servers import Server, start_nats, start_postgres
from callmeter_events import (
    DEADLETTER,
    EVENTS,
    METRICS,
    CallRecorded,
    MetricSample,
    RunCompleted,
    RunFailed,
    RunSamplesStored,
    SipMessage,
    decode,
    encode,
)
from callmeter_events.metric_events import MetricBatch
from callmeter_ingest.consumer import consume
from callmeter_ingest.handlers import Ingest, Pending
from callmeter_storage.compaction import FOLD_LOCK
from callmeter_storage.migrations import migrate
from callmeter_storage.samples import sample_of, to_row, to_write_order
from callmeter_vocabulary.sample import FIELDS, is_msgpack
from callmeter_worker.supervisor.batcher import SampleBatcher

pytestmark = pytest.mark.integration
RECORDS = 6000  # more than the other consumers' work: they are done before the records


def sample(run_id: str, i: int, **metrics: object) -> MetricSample:
    """The i-th sample of a run: 10 endpoints, both directions, one per second."""
    second, rest = divmod(i, 20)
    ts = datetime(2025, 1, 6, 9, 0, tzinfo=UTC) + timedelta(seconds=second)
    values = {"mos": 4.3, "jitter_ms": 2.0, "packets": 50, "codec": "PCMU", **metrics}
    return MetricSample(
        run_id=run_id,
        endpoint_id=f"A-{rest // 2 + 1}",
        direction=("send", "recv")[rest % 2],
        seq=second,
        ts=ts,
        metrics=values,  # type: ignore[arg-type]
    )


def counts(url: str, run_id: str) -> tuple[int, int]:
    """(rows stored, receive samples counted by the rollup): both must be exact."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM metric_samples WHERE run_id = %s", (run_id,))
        n = rows.fetchone()[0]  # type: ignore[index]
        r = conn.execute(
            "SELECT coalesce(sum(n), 0) FROM rollup_second WHERE run_id = %s AND metric = 'samples'",
            (run_id,),
        ).fetchone()
    return int(n), int(r[0])  # type: ignore[index]


async def wait_rows(url: str, run_id: str, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while counts(url, run_id)[0] < expected:
        assert time.monotonic() < deadline, f"{counts(url, run_id)} of {expected} stored"
        await asyncio.sleep(0.2)


async def wait_folded(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            left = conn.execute(
                "SELECT (SELECT count(*) FROM rollup_second_delta)"
                " + (SELECT count(*) FROM rollup_endpoint_delta)"
                " + (SELECT count(*) FROM rollup_hist_delta)"
            ).fetchone()[0]  # type: ignore[index]
            if left == 0:
                return
            assert time.monotonic() < deadline, f"{left} rollup delta rows never folded"
            await asyncio.sleep(0.2)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[Server]:
    # Not the session server: no other metrics-ingest may share our durable consumer.
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture
async def bus(own_nats: Server) -> AsyncIterator[Bus]:
    b = await Bus.connect(own_nats.url, "test")
    await b.ensure_streams()
    yield b
    await b.close()


def start_ingest(tmp_path: Path, nats_url: str, database_url: str, name: str = "ingest"):  # type: ignore[no-untyped-def]
    env = {
        "CALLMETER_NATS_URL": nats_url,
        "CALLMETER_DATABASE_URL": database_url,
        "CALLMETER_RETRY_S": "0.5",
        "CALLMETER_BATCH_SIZE": "200",
    }
    return spawn([sys.executable, "-m", "callmeter_ingest"], tmp_path / f"{name}.log", env=env)


async def publish_steadily(bus: Bus, events: list[MetricSample], per_s: float) -> None:
    """As a worker does: samples handed to its SampleBatcher as they come."""
    batcher = SampleBatcher(bus.publish, "w-1")
    for i in range(0, len(events), 20):
        for event in events[i : i + 20]:
            batcher.add(event.run_id, sample_of(event))
        await asyncio.sleep(20 / per_s)
    await batcher.flush()


async def test_bad_samples_are_dead_lettered_and_the_good_ones_of_the_batch_land(
    bus: Bus, database_url: str
) -> None:
    migrate(database_url)
    run_id = uuid.uuid4().hex[:8]
    stop = asyncio.Event()
    task = asyncio.create_task(consume(bus, Ingest(bus, database_url, 0.5), stop, batch=100))

    # 40 good samples with 3 bad ones in between, and a payload that is not even JSON.
    good = [sample(run_id, i) for i in range(40)]
    bad = [
        sample(run_id, 100, packets="fifty"),  # text in an integer column
        sample(run_id, 101, packets=49.5),  # a fraction in an integer column
    ]
    unknown = encode(sample(run_id, 102)).replace(b'"jitter_ms"', b'"jitter_msec"')
    await bus.publish_many(good[:20] + bad)
    await bus.js.publish(f"callmeter.metrics.{run_id}.A-1", unknown)
    await bus.js.publish(f"callmeter.metrics.{run_id}.A-1", b"\xff\xfe not an event")
    await bus.publish_many(good[20:])

    # A batch of 10 as a (careless) producer could send it: two of its records are bad.
    ten = tuple(sample_of(sample(run_id, i)) for i in range(200, 210))
    batch = msgspec.msgpack.decode(
        encode(MetricBatch(run_id=run_id, worker_id="w-1", seq=1, samples=ten))
    )
    batch["samples"][3][FIELDS.index("packets")] = 49.5
    batch["samples"][6][FIELDS.index("direction")] = "sideways"
    await bus.js.publish(f"callmeter.metrics.{run_id}.batch.w-1", msgspec.msgpack.encode(batch))
    # A clean batch as workers wrote them before MessagePack (JSON), still in the stream.
    four = tuple(sample_of(sample(run_id, i)) for i in range(300, 304))
    old = MetricBatch(run_id=run_id, worker_id="w-0", seq=1, samples=four)
    await bus.js.publish(old.subject(), old.model_dump_json().encode())

    # Every good sample is stored, once, and counted once by the rollup.
    await wait_rows(database_url, run_id, 52)
    await asyncio.sleep(0.5)
    assert counts(database_url, run_id) == (52, 26)

    # The six others are on the dead-letter stream with the reason, each bad record alone.
    deadline = time.monotonic() + 10
    while (await bus.js.stream_info(DEADLETTER.name)).state.messages < 6:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    reasons = []
    for seq in range(1, 7):
        msg = await bus.js.get_msg(DEADLETTER.name, seq)
        assert msg.subject.startswith(f"callmeter.deadletter.test.callmeter.metrics.{run_id}")
        reasons.append((msg.headers or {}).get("CallMeter-Reason", ""))
    joined = " | ".join(reasons)
    assert "packets: Expected `int | null`, got `str`" in joined
    assert "packets: Expected `int | null`, got `float`" in joined
    assert "unknown metric keys: jitter_msec" in joined and "not JSON" in joined
    assert "record 3: packets: Expected `int | null`, got `float`" in joined
    assert "record 6: direction: Invalid enum value 'sideways'" in joined
    parked = (await bus.js.get_msg(DEADLETTER.name, 6)).data
    assert is_msgpack(parked)  # in the format it came in
    assert msgspec.msgpack.decode(parked)["samples"][0][FIELDS.index("direction")] == "sideways"
    stop.set()
    await task


async def test_postgres_down_for_10s_loses_and_duplicates_nothing(
    bus: Bus, own_nats: Server, tmp_path: Path
) -> None:
    pg_dir, port = tmp_path / "pg", free_port()
    pg = start_postgres(pg_dir, port)
    migrate(pg.url)
    ingest = start_ingest(tmp_path, own_nats.url, pg.url)
    run_id = uuid.uuid4().hex[:8]
    events = [sample(run_id, i) for i in range(3000)]
    try:
        publisher = asyncio.create_task(publish_steadily(bus, events, per_s=200))
        await wait_rows(pg.url, run_id, 300)

        # PostgreSQL goes away for 10 s while samples keep coming.
        pg.stop()
        await asyncio.sleep(10)
        pg = start_postgres(pg_dir, port)

        await publisher
        await wait_rows(pg.url, run_id, len(events), timeout=90)
        await asyncio.sleep(1)
        assert counts(pg.url, run_id) == (3000, 1500)
        log = (tmp_path / "ingest.log").read_text()
        assert "postgres unavailable" in log  # it did hold and retry
    finally:
        stop_group(ingest)
        pg.stop()


async def test_kill_9_of_ingest_mid_run_then_restart_stores_every_sample_once(
    bus: Bus, own_nats: Server, database_url: str, tmp_path: Path
) -> None:
    migrate(database_url)
    run_id = uuid.uuid4().hex[:8]
    events = [sample(run_id, i) for i in range(4000)]
    ingest = start_ingest(tmp_path, own_nats.url, database_url)
    try:
        publisher = asyncio.create_task(publish_steadily(bus, events, per_s=400))
        await wait_rows(database_url, run_id, 800)

        # kill -9: batches fetched but not acked come back to the restarted service.
        os.killpg(ingest.pid, signal.SIGKILL)
        ingest.wait(10)
        await asyncio.sleep(2)
        ingest = start_ingest(tmp_path, own_nats.url, database_url, "ingest-2")

        await publisher
        await wait_rows(database_url, run_id, len(events), timeout=90)
        await asyncio.sleep(1)
        assert counts(database_url, run_id) == (4000, 2000)
        # Idle, ingest folds the rollup deltas it appended; the totals stay exact.
        await wait_folded(database_url)
        assert counts(database_url, run_id) == (4000, 2000)
    finally:
        stop_group(ingest)


async def test_the_watermark_comes_once_every_sample_of_the_finished_run_is_stored(
    bus: Bus, own_nats: Server, database_url: str, tmp_path: Path
) -> None:
    # The run ends while ingest is down, with 3,000 samples, 4,000 SIP messages and
    # RECORDS call records not stored yet: when ingest comes back, RunSamplesStored must
    # wait for all of them (never early), and come once.
    migrate(database_url)
    run_id = uuid.uuid4().hex[:8]
    batcher = SampleBatcher(bus.publish, "w-1")
    for event in [sample(run_id, i) for i in range(3000)]:
        batcher.add(run_id, sample_of(event))
    await batcher.flush()  # as the worker does before each EndpointFinished
    start = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    for i in range(4000):
        text = f"OPTIONS sip:b@x SIP/2.0\r\nCSeq: {i} OPTIONS\r\n\r\n"
        ts = start + timedelta(milliseconds=i)
        await bus.publish(
            SipMessage(run_id=run_id, endpoint_id="A-1", direction="out", ts=ts, text=text)
        )
    for i in range(RECORDS):  # a caller's records, before its (and the run's) end
        record = CallRecorded(
            run_id=run_id, endpoint_id="A-1", seq=i + 1, attempted_at=start, outcome="SUCCESS"
        )
        await bus.publish(record)
    await bus.publish(RunCompleted(run_id=run_id))
    marks: asyncio.Queue[tuple[float, tuple[int, ...], RunSamplesStored]] = asyncio.Queue()

    def stored_now() -> tuple[int, int, int, int]:
        with psycopg.connect(database_url) as conn:
            query = "SELECT count(*) FROM sip_messages WHERE run_id = %s"
            messages = conn.execute(query, (run_id,)).fetchone()[0]  # type: ignore[index]
            query = "SELECT count(*) FROM call_records WHERE run_id = %s"
            records = conn.execute(query, (run_id,)).fetchone()[0]  # type: ignore[index]
        return (*counts(database_url, run_id), int(messages), int(records))

    async def on_mark(msg) -> None:  # type: ignore[no-untyped-def]
        stored = await asyncio.to_thread(stored_now)  # right as it comes
        event = decode(msg.data)
        assert isinstance(event, RunSamplesStored)
        await marks.put((time.monotonic(), stored, event))

    await bus.nc.subscribe(f"callmeter.run.{run_id}.status.samples_stored", cb=on_mark)
    ingest = start_ingest(tmp_path, own_nats.url, database_url)
    try:
        _, stored, mark = await asyncio.wait_for(marks.get(), 60)
        # rows, receive samples, SIP messages, call records: all there when the mark came
        assert stored == (3000, 1500, 4000, RECORDS)
        assert (mark.run_id, mark.samples) == (run_id, 1500)
        assert mark.metrics_seq == (await bus.js.stream_info(METRICS.name)).state.last_seq
        # A second ending of the same run (a redelivery, another ingest) is marked again,
        # and JetStream keeps one mark (the same Nats-Msg-Id).
        await bus.publish(RunFailed(run_id=run_id, reason="late duplicate"))
        await asyncio.wait_for(marks.get(), 30)
        subject = f"callmeter.run.{run_id}.status.samples_stored"
        info = await bus.js.stream_info(EVENTS.name, subjects_filter=subject)
        assert info.state.subjects == {subject: 1}
    finally:
        stop_group(ingest)


async def test_a_fold_that_finds_another_folding_is_tried_again(
    bus: Bus, database_url: str
) -> None:
    """Two ingest processes: one whose fold finds the other folding (the try-lock taken)
    keeps its deltas marked unfolded and folds them itself later: the other's fold may
    have begun before its last write committed (bench/ingest.py once found deltas that
    stayed unfolded)."""
    migrate(database_url)
    ingest, run_id = Ingest(bus, database_url, 0.5), uuid.uuid4().hex[:8]
    rows = [to_write_order(to_row(sample(run_id, i))) for i in range(40)]
    await ingest._write_isolating(Pending(rows=rows), list(range(len(rows))))
    assert ingest.unfolded_since is not None

    def unfolded() -> int:
        query = "SELECT count(*) FROM rollup_endpoint_delta WHERE run_id = %s"
        return conn.execute(query, (run_id,)).fetchone()[0]  # type: ignore[index]

    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        psycopg.connect(database_url) as other,
    ):
        other.execute("SELECT pg_advisory_xact_lock(%s)", (FOLD_LOCK,))  # the other folds
        await ingest.fold()
        assert ingest.unfolded_since is not None and unfolded() == 10
        other.commit()
        await ingest.fold()
        assert ingest.unfolded_since is None and unfolded() == 0
        assert counts(database_url, run_id) == (40, 20)
