"""Sample -> row: the checks that decide what ingest stores and what it dead-letters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callmeter_events import MetricSample, decode, encode
from callmeter_events.metrics_catalogue import CATALOGUE
from callmeter_storage.samples import COLUMNS, SampleRejected, sample_from_json, to_row

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def sample(**metrics: object) -> MetricSample:
    return MetricSample(
        run_id="r1",
        endpoint_id="callers-12",
        direction="recv",
        seq=3,
        ts=T0,
        metrics=metrics,  # type: ignore[arg-type]
    )


def test_a_row_has_every_column_in_order_with_the_group_from_the_endpoint_id() -> None:
    row = to_row(sample(mos=4.4, packets=50, codec="PCMU"))
    cells = dict(zip(COLUMNS, row, strict=True))
    assert cells["group_name"] == "callers"
    assert (cells["mos"], cells["packets"], cells["codec"]) == (4.4, 50, "PCMU")
    # Keys the sample does not carry are null, never a made-up number.
    assert cells["jitter_ms"] is None and len(row) == 6 + len(CATALOGUE)


def test_an_integer_is_accepted_for_a_float_column_and_stored_as_float() -> None:
    cells = dict(zip(COLUMNS, to_row(sample(mos=4, jitter_ms=0)), strict=True))
    assert cells["mos"] == 4.0 and isinstance(cells["mos"], float)


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"packets": "abc"}, "packets: expected a number"),
        ({"packets": 1.5}, "packets: expected an integer"),
        ({"packets": 2**63}, "packets: expected an integer"),
        ({"mos": float("nan")}, "mos: not a finite number"),
        ({"codec": 8}, "codec: expected text"),
        ({"codec": "PC\x00MU"}, "codec: NUL character"),
    ],
)
def test_a_value_of_the_wrong_type_is_rejected_with_the_key_named(metrics, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SampleRejected, match=reason):
        to_row(sample(**metrics))


def test_the_fast_path_gives_the_same_row_as_the_generic_decode() -> None:
    data = encode(sample(mos=4.41, packets=50, codec="PCMU", fraction_lost=0.0))
    fast = sample_from_json(data)
    assert fast is not None
    assert to_row(fast) == to_row(decode(data))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\x00 not json",
        b'{"type": "MetricSample", "schema_version": 1}',
        encode(sample(mos=4.4)).replace(b'"mos"', b'"moss"'),  # unknown key
        encode(sample(mos=4.4)).replace(b'"schema_version":1', b'"schema_version":0'),
    ],
)
def test_the_fast_path_hands_anything_unusual_to_the_generic_decode(data: bytes) -> None:
    assert sample_from_json(data) is None
