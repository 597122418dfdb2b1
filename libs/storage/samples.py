"""MetricSample -> table row, checked against the column types. Pure."""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from callmeter_events import MetricSample
from callmeter_events.codec import current_version
from callmeter_events.metric_events import FLOAT_KEYS, INT_KEYS, TEXT_KEYS
from callmeter_events.metrics_catalogue import CATALOGUE

from .rollup import group_of

HEAD: tuple[str, ...] = ("time", "run_id", "endpoint_id", "direction", "seq", "group_name")
COLUMNS: tuple[str, ...] = HEAD + tuple(m.key for m in CATALOGUE)
PG_TYPES: tuple[str, ...] = ("timestamptz", "text", "text", "text", "int4", "text") + tuple(
    {"float": "float8", "int": "int8", "text": "text"}[m.kind] for m in CATALOGUE
)
# The order ingest writes columns in: a MetricBatch record's layout (floats, ints,
# texts), so a batch's values go into the COPY as they come. Export keeps COLUMNS.
WRITE_COLUMNS: tuple[str, ...] = HEAD + FLOAT_KEYS + INT_KEYS + TEXT_KEYS
WRITE_TYPES: tuple[str, ...] = tuple(PG_TYPES[COLUMNS.index(c)] for c in WRITE_COLUMNS)
to_write_order = operator.itemgetter(*(COLUMNS.index(c) for c in WRITE_COLUMNS))
_INT_MAX = 2**63 - 1
# Per-call timings (post-dial delay, setup time, ...): kept per endpoint in call_timings.
TIMING_KEYS: tuple[str, ...] = tuple(m.key for m in CATALOGUE if m.category == "timing")


class SampleRejected(ValueError):
    """The sample cannot be stored as is; the message names the key."""


def check_cell(kind: str, key: str, value: Any) -> Any:
    """The value as stored in a column of this kind, or SampleRejected naming the key."""
    if value is None:
        return None
    if kind == "text":
        if not isinstance(value, str):
            raise SampleRejected(f"{key}: expected text, got {type(value).__name__}")
        if "\x00" in value:  # PostgreSQL text cannot hold NUL; COPY would fail the batch
            raise SampleRejected(f"{key}: NUL character in text")
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
    if ts.tzinfo is None:
        raise SampleRejected("ts: a timezone is required")
    if not -(2**31) <= sample.seq < 2**31:
        raise SampleRejected(f"seq: out of range: {sample.seq}")
    for key in ("run_id", "endpoint_id"):
        check_cell("text", key, getattr(sample, key))
    get = sample.metrics.get
    cells = tuple([_fast_cell(kind, get(key)) for key, kind in _KINDS])
    if _SLOW in cells:
        cells = tuple(check_cell(kind, key, get(key)) for key, kind in _KINDS)
    head = (ts, sample.run_id, sample.endpoint_id, sample.direction, sample.seq)
    return head + (group_of(sample.endpoint_id),) + cells


_KINDS = tuple((m.key, m.kind) for m in CATALOGUE)
_FINITE = 1.7976931348623157e308
_CURRENT_VERSION = current_version("MetricSample")
_SLOW = object()


def _fast_cell(kind: str, value: Any) -> Any:
    """The cell when the value is exactly the expected type, else _SLOW (then check_cell decides)."""
    if value is None:
        return None
    t = type(value)
    if kind == "float":
        if t is float and -_FINITE <= value <= _FINITE:
            return value
        return float(value) if t is int and abs(value) <= _INT_MAX else _SLOW
    if kind == "int":
        return value if t is int and abs(value) <= _INT_MAX else _SLOW
    return value if t is str and "\x00" not in value else _SLOW


def sample_from_json(data: bytes) -> MetricSample | None:
    """Ingest's hot path: a current-version MetricSample straight from JSON bytes.

    The generic decode (json.loads, upcast, the discriminated union) costs
    several times more. Returns None for anything else (another type, an
    older version that needs upcasting, an invalid payload): the caller then
    takes the generic decode, which upcasts or names the reason.
    """
    try:
        sample = MetricSample.model_validate_json(data)
    except ValidationError:
        return None
    return sample if sample.schema_version == _CURRENT_VERSION else None
