"""MetricBatch: what workers publish and how ingest turns it into rows, without servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from callmeter_events import MetricSample, decode, encode
from callmeter_events.metric_events import MetricBatch
from callmeter_storage.batches import batch_rows
from callmeter_storage.samples import SampleRejected, to_row, to_write_order
from callmeter_worker.supervisor.batcher import SampleBatcher

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def sample(i: int, run_id: str = "r1", **metrics: object) -> MetricSample:
    values = {"mos": 4.3, "jitter_ms": 2.0, "packets": 50, "codec": "PCMU", **metrics}
    return MetricSample(
        run_id=run_id,
        endpoint_id=f"A-{i // 2 + 1}",
        direction=("send", "recv")[i % 2],
        seq=i // 2,
        ts=T0 + timedelta(seconds=i // 2),
        metrics=values,  # type: ignore[arg-type]
    )


def payload(samples: list[MetricSample]) -> dict:  # type: ignore[type-arg]
    return orjson.loads(encode(MetricBatch.pack("r1", "w.1", 7, samples)))  # type: ignore[no-any-return]


def test_a_batch_gives_the_same_rows_as_its_samples_one_by_one() -> None:
    samples = [sample(i) for i in range(6)]
    out = batch_rows(payload(samples))
    assert out.rejected == []
    assert out.rows == [to_write_order(to_row(s)) for s in samples]
    assert out.records == list(range(6))


def test_a_batch_round_trips_through_the_codec_and_unpacks_to_its_samples() -> None:
    samples = [sample(i) for i in range(4)]
    batch = decode(encode(MetricBatch.pack("r1", "w.1", 7, samples)))
    assert isinstance(batch, MetricBatch)
    assert [s.metrics for s in batch.unpack()] == [
        {
            **dict.fromkeys(
                s.metrics | dict.fromkeys(batch.float_keys + batch.int_keys + batch.text_keys)
            ),
            **s.metrics,
        }
        for s in samples
    ]
    # One subject token per worker, whatever its id holds; dedup by run, worker and number.
    assert batch.subject() == "callmeter.metrics.r1.batch.w_1"
    assert batch.msg_id() == MetricBatch.pack("r1", "w.1", 7, samples[:1]).msg_id()


def test_a_bad_record_is_rejected_alone_with_its_reason_and_the_others_stay() -> None:
    data = payload([sample(i) for i in range(4)])
    packets = data["int_keys"].index("packets")
    data["samples"][1][5][packets] = 49.5  # a fraction in an integer column
    data["samples"][2][4][0] = "high"  # text in a float column
    out = batch_rows(data)
    assert out.records == [0, 3]
    assert out.rejected == [
        (1, "A-1 recv seq 0: packets: expected an integer, got 49.5"),
        (2, "A-2 send seq 1: mos: expected a number, got str"),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"float_keys": [], "int_keys": ["mos"]}, "int_keys: not int metrics: mos"),
        ({"text_keys": ["codec", "jitter_msec"]}, "unknown metric keys: jitter_msec"),
        ({"samples": "lots"}, "samples: expected a list"),
    ],
)
def test_a_batch_whose_keys_or_shape_are_wrong_is_rejected_whole(change, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SampleRejected, match=reason):
        batch_rows({**payload([sample(0)]), **change})


def test_a_record_of_the_wrong_shape_is_named_by_its_index() -> None:
    data = payload([sample(0), sample(1)])
    data["samples"][0] = data["samples"][0][:4]
    data["samples"][1][3] = "yesterday"
    out = batch_rows(data)
    assert out.rows == [] and [i for i, _ in out.rejected] == [0, 1]
    assert "ts: not an ISO 8601 time" in out.rejected[1][1]


def test_keys_in_another_order_or_missing_land_in_the_right_columns() -> None:
    data = payload([sample(1)])
    floats, values = data["float_keys"], data["samples"][0][4]
    keep = [floats.index("jitter_ms"), floats.index("mos")]  # two keys, swapped
    data["float_keys"] = [floats[i] for i in keep]
    data["samples"][0][4] = [values[i] for i in keep]
    (row,) = batch_rows(data).rows
    assert row == to_write_order(to_row(sample(1, jitter_ms=2.0, mos=4.3)))


async def test_the_batcher_publishes_one_batch_per_run_after_the_interval() -> None:
    published: list[MetricBatch] = []

    async def publish(event: MetricBatch) -> None:
        published.append(event)

    batcher = SampleBatcher(publish, "w1", interval_s=0.05)  # type: ignore[arg-type]
    for i in range(6):
        batcher.add(sample(i, run_id="r1" if i < 4 else "r2"))
    assert published == []  # nothing before the interval
    await asyncio.sleep(0.15)
    assert sorted((b.run_id, len(b.samples)) for b in published) == [("r1", 4), ("r2", 2)]
    assert all(b.seq > 1_600_000_000_000 for b in published)  # from the clock: restarts go on


async def test_the_batcher_cuts_at_max_samples_and_flush_sends_the_rest_in_order() -> None:
    published: list[MetricBatch] = []

    async def publish(event: MetricBatch) -> None:
        published.append(event)

    batcher = SampleBatcher(publish, "w1", interval_s=60, max_samples=4)  # type: ignore[arg-type]
    for i in range(10):
        batcher.add(sample(i))
    await batcher.flush("r1")
    assert [len(b.samples) for b in published] == [4, 4, 2]
    assert [b.seq for b in published] == sorted({b.seq for b in published})


async def test_a_sample_that_cannot_be_batched_goes_alone_and_the_rest_as_a_batch() -> None:
    published: list[object] = []

    async def publish(event: object) -> None:
        published.append(event)

    batcher = SampleBatcher(publish, "w1", interval_s=60)  # type: ignore[arg-type]
    bad = sample(1, packets="fifty")
    for s in (sample(0), bad, sample(2)):
        batcher.add(s)
    await batcher.flush()
    assert [type(e).__name__ for e in published] == ["MetricBatch", "MetricSample"]
    assert len(published[0].samples) == 2 and published[1] == bad  # type: ignore[attr-defined]
