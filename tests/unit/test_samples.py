"""The sample contract's checks: what ingest stores and what it dead-letters, by field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callmeter_events import MetricSample
from callmeter_storage.samples import COLUMNS, SampleRejected, to_row
from callmeter_vocabulary.metrics import CATALOGUE

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
        ({"packets": "abc"}, "packets: Expected `int | null`, got `str`"),
        ({"packets": 1.5}, "packets: Expected `int | null`, got `float`"),
        ({"packets": 2**63}, "packets: Expected `int` <= 9223372036854775807"),
        ({"mos": float("inf")}, "mos: Expected `float` <= 1.79"),
        ({"mos": float("nan")}, "mos: Expected `float` >= -1.79"),
        ({"codec": 8}, "codec: Expected `str | null`, got `int`"),
        ({"codec": "PC\x00MU"}, "codec: Expected `str` matching regex"),
    ],
)
def test_a_value_of_the_wrong_type_is_rejected_with_the_key_named(metrics, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SampleRejected, match=reason.replace("|", r"\|")):
        to_row(sample(**metrics))
