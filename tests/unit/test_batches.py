"""MetricBatch: the samples workers publish, on the wire and back, without servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import orjson
import pytest

from callmeter_events import EventDecodeError, decode, encode
from callmeter_events.metric_events import MetricBatch
from callmeter_storage.samples import WRITE_COLUMNS, rows_of
from callmeter_vocabulary.metrics import CATALOGUE, KEYS
from callmeter_vocabulary.sample import (
    FIELDS,
    SampleHead,
    decode_batch,
    is_msgpack,
    make,
    metrics_of,
)
from callmeter_worker.supervisor.batcher import SampleBatcher

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def sample(i: int, **metrics: object) -> SampleHead:
    values = {"mos": 4.3, "jitter_ms": 2.0, "packets": 50, "codec": "PCMU", **metrics}
    return make(
        f"A-{i // 2 + 1}", ("send", "recv")[i % 2], i // 2, values, T0 + timedelta(seconds=i // 2)
    )


def test_a_batch_round_trips_through_the_codec_sample_by_sample() -> None:
    samples = tuple(sample(i) for i in range(4))
    batch = MetricBatch(run_id="r1", worker_id="w.1", seq=7, samples=samples)
    data = encode(batch)
    assert is_msgpack(data) and decode(data) == batch
    # On the wire each sample is an array in the contract's field order: keys named once,
    # the time a MessagePack timestamp.
    wire = msgspec.msgpack.decode(data)["samples"][1]
    assert len(wire) == len(FIELDS) and wire[:4] == [T0, "A-1", "recv", 0]
    assert wire[FIELDS.index("packets")] == 50 and wire[FIELDS.index("rtt_ms")] is None
    # One subject token per worker, whatever its id holds; dedup by run, worker and number.
    assert batch.subject() == "callmeter.metrics.r1.batch.w_1"
    assert batch.msg_id() == MetricBatch(run_id="r1", worker_id="w.1", seq=7, samples=()).msg_id()


def test_ingest_reads_a_batch_into_rows_whose_cells_are_the_samples_values() -> None:
    samples = tuple(sample(i, rtt_ms=i * 1.5) for i in range(4))
    data = encode(MetricBatch(run_id="r1", worker_id="w", seq=1, samples=samples))
    view = decode_batch(data)
    rows = rows_of(view.run_id, view.samples)
    for s, row in zip(samples, rows, strict=True):
        cells = dict(zip(WRITE_COLUMNS, row, strict=True))
        assert {k: cells[k] for k in KEYS} == metrics_of(s)
        assert (cells["time"], cells["endpoint_id"], cells["direction"], cells["seq"]) == (
            s.ts,
            s.endpoint_id,
            s.direction,
            s.seq,
        )
        assert (cells["run_id"], cells["group_name"]) == ("r1", "A")


def test_a_json_batch_as_workers_published_before_decodes_to_the_same_samples() -> None:
    # Batches published before MessagePack may still be in the stream after an upgrade.
    samples = tuple(sample(i, rtt_ms=i * 1.5) for i in range(4))
    batch = MetricBatch(run_id="r1", worker_id="w", seq=1, samples=samples)
    data = batch.model_dump_json().encode()
    assert data[:1] == b"{" and not is_msgpack(data)
    assert decode(data) == batch
    assert decode_batch(data).samples == decode_batch(encode(batch)).samples == list(samples)


@pytest.mark.parametrize("wire", ["msgpack", "json"])
def test_a_bad_sample_makes_the_batch_invalid_naming_the_record_and_field(wire: str) -> None:
    batch = MetricBatch(run_id="r", worker_id="w", seq=1, samples=(sample(0), sample(1)))
    data = (
        msgspec.msgpack.decode(encode(batch))
        if wire == "msgpack"
        else orjson.loads(batch.model_dump_json())
    )
    data["samples"][1][FIELDS.index("packets")] = 49.5
    bad = msgspec.msgpack.encode(data) if wire == "msgpack" else orjson.dumps(data)
    with pytest.raises(EventDecodeError, match="record 1: packets: Expected `int | null`"):
        decode(bad)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int \| null`"):
        decode_batch(bad)


def test_what_is_neither_json_nor_msgpack_is_named_as_such() -> None:
    with pytest.raises(EventDecodeError, match="not JSON"):
        decode(b"\xff\xfe not an event")
    with pytest.raises(EventDecodeError, match="not MessagePack"):
        decode(b"\x81\xc1")  # a map, then a byte MessagePack never uses


def test_a_version_1_batch_is_upcast_to_the_same_samples() -> None:
    floats, ints, texts = (
        [m.key for m in CATALOGUE if m.kind == kind] for kind in ("float", "int", "text")
    )
    ts = "2025-01-06T09:00:00Z"
    old = {
        "type": "MetricBatch",
        "schema_version": 1,
        "event_id": "e1",
        "occurred_at": ts,
        "run_id": "r1",
        "worker_id": "w",
        "seq": 3,
        "float_keys": ["jitter_ms", "mos"],  # v1 could name fewer keys, in any order
        "int_keys": ints,
        "text_keys": texts,
        "samples": [
            [
                "A-1",
                "recv",
                0,
                ts,
                [2.0, 4.3],
                [50 if k == "packets" else None for k in ints],
                ["PCMU"],
            ]
        ],
    }
    assert floats and texts == ["codec"]
    batch = decode(orjson.dumps(old))
    assert isinstance(batch, MetricBatch)
    assert batch.samples == (sample(1),)


async def test_the_batcher_publishes_one_batch_per_run_after_the_interval() -> None:
    published: list[MetricBatch] = []

    async def publish(event: MetricBatch) -> None:
        published.append(event)

    batcher = SampleBatcher(publish, "w1", interval_s=0.05)  # type: ignore[arg-type]
    for i in range(6):
        batcher.add("r1" if i < 4 else "r2", sample(i))
    assert published == []  # nothing before the interval
    await asyncio.sleep(0.15)
    assert sorted((b.run_id, len(b.samples)) for b in published) == [("r1", 4), ("r2", 2)]
    assert all(b.seq > 1_600_000_000_000 for b in published)  # from the clock: restarts go on
    assert published[0].samples == tuple(sample(i) for i in range(4))  # as they came


async def test_the_batcher_cuts_at_max_samples_and_flush_sends_the_rest_in_order() -> None:
    published: list[MetricBatch] = []

    async def publish(event: MetricBatch) -> None:
        published.append(event)

    batcher = SampleBatcher(publish, "w1", interval_s=60, max_samples=4)  # type: ignore[arg-type]
    for i in range(10):
        batcher.add("r1", sample(i))
    await batcher.flush("r1")
    assert [len(b.samples) for b in published] == [4, 4, 2]
    assert [b.seq for b in published] == sorted({b.seq for b in published})
