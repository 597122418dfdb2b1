"""MetricSample -> table row, checked against the column types. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from callmeter_events import MetricSample
from callmeter_events.metrics_catalogue import CATALOGUE

COLUMNS: tuple[str, ...] = ("time", "run_id", "endpoint_id", "direction", "seq") + tuple(
    m.key for m in CATALOGUE
)
PG_TYPES: tuple[str, ...] = ("timestamptz", "text", "text", "text", "int4") + tuple(
    {"float": "float8", "int": "int8", "text": "text"}[m.kind] for m in CATALOGUE
)
_INT_MAX = 2**63 - 1


class SampleRejected(ValueError):
    """The sample cannot be stored as is; the message names the key."""


def _cell(kind: str, key: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "text":
        if not isinstance(value, str):
            raise SampleRejected(f"{key}: expected text, got {type(value).__name__}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SampleRejected(f"{key}: expected a number, got {type(value).__name__}")
    if kind == "int":
        if value != value or abs(value) > _INT_MAX or int(value) != value:
            raise SampleRejected(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise SampleRejected(f"{key}: not a finite number")
    return float(value)


def to_row(sample: MetricSample) -> tuple[Any, ...]:
    """One row in COLUMNS order; raises SampleRejected for a value of the wrong type."""
    ts: datetime = sample.ts
    values = sample.metrics
    cells = tuple(_cell(m.kind, m.key, values.get(m.key)) for m in CATALOGUE)
    return (ts, sample.run_id, sample.endpoint_id, sample.direction, sample.seq) + cells
