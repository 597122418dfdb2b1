"""MetricBatch.pack and encode skip pydantic where it would change nothing: same batch, same JSON.

The reference is what pack and encode did before: every record through the
validating constructor, and `model_dump_json`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic import ValidationError

from callmeter_events import MetricSample, decode, encode
from callmeter_events import metric_events as me
from callmeter_events.metric_events import FLOAT_KEYS, INT_KEYS, TEXT_KEYS, MetricBatch
from callmeter_storage.batches import batch_rows

T0 = datetime(2025, 1, 6, 9, 0, 0, 250_000, tzinfo=UTC)
FULL: dict[str, Any] = {
    **{k: 1.5 + i / 7 for i, k in enumerate(FLOAT_KEYS)},
    **{k: 40 + i for i, k in enumerate(INT_KEYS)},
    **dict.fromkeys(TEXT_KEYS, "PCMU"),
}


def sample(i: int = 0, ts: datetime = T0, direction: str = "recv", **metrics: Any) -> MetricSample:
    return MetricSample(
        run_id="r1",
        endpoint_id=f"A-{i}",
        direction=direction,
        seq=i,  # type: ignore[arg-type]
        ts=ts + timedelta(seconds=i),
        metrics={**FULL, **metrics},
    )


def raw(i: int = 0, ts: datetime = T0, **fields: Any) -> MetricSample:
    """A sample that skipped validation (model_construct): pack must still judge its values."""
    values = {"run_id": "r1", "endpoint_id": f"A-{i}", "direction": "send", "seq": i, "ts": ts}
    return MetricSample.model_construct(**{**values, "metrics": FULL, **fields})


def reference(samples: Sequence[MetricSample]) -> MetricBatch:
    """pack as it was: every value validated."""
    records = [
        (
            s.endpoint_id,
            s.direction,
            s.seq,
            s.ts,
            tuple(map(s.metrics.get, FLOAT_KEYS)),
            tuple(map(s.metrics.get, INT_KEYS)),
            tuple(map(s.metrics.get, TEXT_KEYS)),
        )
        for s in samples
    ]
    return MetricBatch(run_id="r1", worker_id="w.1", seq=7, samples=records)  # type: ignore[arg-type]


def assert_same(samples: Sequence[MetricSample]) -> MetricBatch:
    """pack gives the reference batch (value types too: 1 == 1.0), encode the same content."""
    batch, ref = MetricBatch.pack("r1", "w.1", 7, samples), reference(samples)
    assert batch.model_fields_set == ref.model_fields_set
    ref = ref.model_copy(update={"occurred_at": batch.occurred_at})  # the one field set by clock
    assert repr(batch) == repr(ref)
    if not any(isinstance(v, float) and math.isnan(v) for s in samples for v in s.metrics.values()):
        assert batch == ref
    new, old = encode(batch), ref.model_dump_json().encode()
    assert decode(new) == decode(old) and repr(decode(new)) == repr(decode(old))
    assert batch_rows(orjson.loads(new)) == batch_rows(orjson.loads(old))
    return batch


def fast(samples: Sequence[MetricSample]) -> bool:
    return me._as_validated([me._record(s) for s in samples]) is not None


def test_plain_samples_take_the_fast_path_and_give_the_validated_batch_byte_for_byte() -> None:
    samples = [sample(i, direction=("send", "recv")[i % 2]) for i in range(6)]
    assert fast(samples)
    batch = assert_same(samples)
    assert encode(batch) == batch.model_dump_json().encode()


@pytest.mark.parametrize(
    "metrics",
    [
        {k: None for k in FULL},  # every value null
        {"mos": None, "packets": None, "codec": None},
        {"mos": 4, "jitter_ms": 0, "rtt_ms": -(2**53)},  # ints in float keys become floats
        # ints no float holds exactly: rounded as validation rounds them
        {"mos": 2**53 + 1, "jitter_ms": -(2**63 + 2**11 + 1), "rtt_ms": 2**80 + 1},
        {"mos": 2**1024 - 2**970 - 1, "jitter_ms": 7, "rtt_ms": None},
        {"mos": 0.0, "jitter_ms": -0.0, "rtt_ms": 1e300, "packets": 2**63 - 1},
        {"mos": 5e-324, "jitter_ms": 1e16, "rtt_ms": 123456789.123456789},
        {"packets": 2**80},  # kept, but beyond what orjson writes: pydantic writes it
        {"packets": 2**40, "codec": 'G.722 \u00e9\u2028\U0001f600"\\/\x00\x1f'},
        {"mos": math.inf, "jitter_ms": -math.inf, "rtt_ms": math.nan},  # written as null
    ],
)
def test_values_the_model_keeps_as_they_are_take_the_fast_path(metrics: dict[str, Any]) -> None:
    samples = [sample(0), sample(1, **metrics), sample(2)]
    assert fast(samples)
    assert_same(samples)


def test_missing_keys_are_null_on_either_path() -> None:
    sparse = MetricSample(
        run_id="r1", endpoint_id="A-9", direction="send", seq=9, ts=T0, metrics={"mos": 4.1}
    )
    empty = MetricSample(run_id="r1", endpoint_id="A-8", direction="send", seq=8, ts=T0, metrics={})
    samples = [sample(0), sparse, empty]
    assert fast(samples)
    batch = assert_same(samples)
    assert batch.samples[1][4] == (4.1, *[None] * (len(FLOAT_KEYS) - 1))
    assert batch.samples[2][5:] == ((None,) * len(INT_KEYS), (None,) * len(TEXT_KEYS))


@pytest.mark.parametrize(
    "metrics",
    [
        {"mos": "4.5"},  # a numeric string in a float key: validation converts it
        {"packets": 50.0},  # a whole float in an int key: validation converts it
    ],
)
def test_values_validation_would_convert_go_through_validation(metrics: dict[str, Any]) -> None:
    samples = [sample(0), sample(1, **metrics)]
    assert not fast(samples)
    assert_same(samples)


@pytest.mark.parametrize(
    "fields",
    [
        {"metrics": {**FULL, "mos": True}},  # a bool
        {"metrics": {**FULL, "packets": False}},
        {"metrics": {**FULL, "codec": type("Codec", (str,), {})("PCMU")}},  # a subclass
        {"metrics": {**FULL, "mos": type("F", (float,), {})(4.2)}},
        {"seq": "3"},
        {"endpoint_id": type("Name", (str,), {})("A-1")},
        {"ts": "2025-01-06T09:00:00Z"},
    ],
)
def test_samples_that_skipped_validation_are_judged_by_validation(fields: dict[str, Any]) -> None:
    samples = [raw(0), raw(1, **fields)]
    assert not fast(samples)
    assert_same(samples)


@pytest.mark.parametrize(
    "sample_of_wrong_kind",
    [
        lambda: sample(1, mos="high"),  # text in a float key
        lambda: sample(1, packets=49.5),  # a fraction in an int key
        lambda: sample(1, packets="many"),
        lambda: sample(1, codec=8),  # a number in a text key
        lambda: sample(1, codec=8.0),
        lambda: raw(1, direction="sideways"),
        lambda: raw(1, metrics={**FULL, "rtt_ms": 10**400}),  # no float holds it
    ],
)
def test_a_value_of_the_wrong_kind_still_raises_validation_error(sample_of_wrong_kind) -> None:  # type: ignore[no-untyped-def]
    samples = [sample(0), sample_of_wrong_kind()]
    assert not fast(samples)
    with pytest.raises(ValidationError):
        reference(samples)
    with pytest.raises(ValidationError):
        MetricBatch.pack("r1", "w.1", 7, samples)


@pytest.mark.parametrize(
    "ts",
    [
        datetime(2025, 1, 6, 9, 0),  # naive: kept naive, written without an offset
        datetime(2025, 1, 6, 9, 0, 0, 1),
        datetime(2025, 1, 6, 9, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2025, 1, 6, 9, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
        datetime(2025, 1, 6, 9, 0, tzinfo=timezone(timedelta(seconds=30))),  # pydantic drops it
        datetime(2025, 1, 6, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2025, 1, 6, 9, 0, tzinfo=ZoneInfo("UTC")),
    ],
)
def test_timestamps_are_kept_and_written_as_the_model_does(ts: datetime) -> None:
    samples = [sample(0, ts=ts), sample(1, ts=ts)]
    assert fast(samples)
    batch = assert_same(samples)
    assert batch.samples[0][3] is samples[0].ts
    assert encode(batch) == batch.model_dump_json().encode()


def test_utc_is_written_with_z_and_read_back_by_ingest_and_the_codec() -> None:
    batch = MetricBatch.pack("r1", "w.1", 7, [sample(0)])
    data = encode(batch)
    assert b'"2025-01-06T09:00:00.250000Z"' in data
    assert datetime.fromisoformat(orjson.loads(data)["samples"][0][3]) == T0
    assert decode(data) == batch


def test_a_decoded_batch_encodes_to_the_same_bytes() -> None:
    data = encode(MetricBatch.pack("r1", "w.1", 7, [sample(i) for i in range(3)]))
    assert encode(decode(data)) == data  # pydantic's own UTC (TzInfo) takes pydantic's writer


def test_an_empty_batch_is_the_same_either_way() -> None:
    assert_same([])
