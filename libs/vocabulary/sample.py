"""The per-second sample: one typed definition from the endpoint host to the COPY.

`Sample` is a msgspec Struct with one field per catalogue key (metrics.py), in
catalogue order, after its head (time, endpoint, direction, seq). The endpoint
host builds it from PJSIP's statistics and writes it to the supervisor as a
JSON array; the supervisor stamps the endpoint's id on it and puts it, as it
is, into a MetricBatch (MessagePack on NATS); metrics-ingest decodes the batch
straight into Samples (`decode_batch`) and each Sample's fields, in order, are
the first cells of its COPY row (`row_cells`). Decoding checks every value against its column's type (a
float is finite, an int fits int8, text holds no NUL, the time has a zone),
in C; there is no other check and no other shape.

On either wire a Sample is an array, so the key names are not repeated in every
sample. A metric added to the catalogue goes at its end (a new last field,
null by default): an older producer's shorter arrays still decode, and extra
trailing values from a newer one are ignored. Reordering or removing a key
changes the layout: that needs a new MetricBatch schema_version and an
upcaster (libs/events/metric_events.py).

Kept in this pydantic-free package because the endpoint host (one process per
4 calls) imports it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .metrics import CATALOGUE, KEYS

_FLOAT_MAX = 1.7976931348623157e308
# The column types of metric_samples, as msgspec constraints.
Float8 = Annotated[float, Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]  # finite: no NaN, no inf
Int8 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Int4 = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
Text = Annotated[str, Meta(pattern="^[^\x00]*$")]  # PostgreSQL text cannot hold NUL
Id = Annotated[str, Meta(min_length=1, pattern="^[^\x00]*$")]
Time = Annotated[datetime, Meta(tz=True)]
SampleDirection = Literal["send", "recv"]
_TYPES: dict[str, Any] = {"float": Float8, "int": Int8, "text": Text}


class SampleHead(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The head of every Sample; the metrics follow as fields named by the catalogue."""

    ts: Time
    endpoint_id: Id
    direction: SampleDirection
    seq: Int4


Sample: type[SampleHead] = msgspec.defstruct(  # type: ignore[assignment]
    "Sample",
    [(m.key, _TYPES[m.kind] | None, None) for m in CATALOGUE],
    bases=(SampleHead,),
    module=__name__,
    array_like=True,
    frozen=True,
    gc=False,
)
Sample.__doc__ = (
    "One second of one direction of one endpoint; every catalogue key, null when unknown."
)

HEAD_FIELDS: tuple[str, ...] = SampleHead.__struct_fields__
FIELDS: tuple[str, ...] = Sample.__struct_fields__  # HEAD_FIELDS + KEYS
assert FIELDS == HEAD_FIELDS + KEYS


def make(
    endpoint_id: str,
    direction: SampleDirection,
    seq: int,
    metrics: dict[str, Any],
    ts: datetime | None = None,
) -> SampleHead:
    """A Sample of these metrics (a key outside the catalogue: TypeError), stamped now
    unless `ts` is given. Not checked: whoever decodes it checks it."""
    return Sample(ts or datetime.now(UTC), endpoint_id, direction, seq, **metrics)


def metrics_of(sample: SampleHead) -> dict[str, Any]:
    """The metric values of a sample by key (for reading and tests, not the hot path)."""
    return dict(zip(KEYS, msgspec.structs.astuple(sample)[len(HEAD_FIELDS) :], strict=True))


row_cells = msgspec.structs.astuple  # a Sample's fields, in FIELDS order


class SampleRejected(ValueError):
    """A sample (or a batch) that cannot be stored as it is; the message names the field."""


def check(record: Any) -> SampleHead:
    """One sample from its values in FIELDS order (a JSON array as parsed, or Python
    values), checked as decoding checks them; SampleRejected names the field."""
    try:
        return msgspec.convert(record, Sample)
    except msgspec.ValidationError as exc:
        raise SampleRejected(explain(exc)) from None


def explain(exc: Exception, in_list: bool = False) -> str:
    """msgspec's message with the array position it names replaced by the field's name:
    "packets: Expected `int | null`, got `float`" (`in_list`: the path starts with the
    sample's index in a list: "record 3: packets: ...")."""
    message, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        return str(exc)
    indices = [int(i) for i in re.findall(r"\[(\d+)\]", where)]
    prefix = ""
    if in_list and indices:
        prefix, indices = f"record {indices[0]}: ", indices[1:]
    if len(indices) == 1 and indices[0] < len(FIELDS):
        return f"{prefix}{FIELDS[indices[0]]}: {message}"
    return prefix + message


class BatchView(msgspec.Struct):
    """What metrics-ingest reads of a MetricBatch message (libs/events/metric_events.py
    defines the event): its run and its samples, decoded in one pass. The other fields
    are not needed to store the samples and are not read."""

    type: Literal["MetricBatch"]
    schema_version: int
    run_id: Id
    samples: list[Sample]  # type: ignore[valid-type]


# What a MessagePack map starts with (fixmap, map16, map32); a JSON object starts with "{".
_MSGPACK_MAP = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_DECODE_MSGPACK = msgspec.msgpack.Decoder(BatchView).decode
_DECODE_JSON = msgspec.json.Decoder(BatchView).decode


def is_msgpack(data: bytes) -> bool:
    """Whether a message on CALLMETER_METRICS is MessagePack (a MetricBatch as workers
    publish it now) rather than JSON (a batch published before, a single MetricSample)."""
    return bool(data) and data[0] in _MSGPACK_MAP


def decode_batch(data: bytes) -> BatchView:
    """A MetricBatch message (MessagePack, or the JSON of older workers) decoded and
    checked in one pass; msgspec.DecodeError or ValidationError if it is not a clean one."""
    return (_DECODE_MSGPACK if is_msgpack(data) else _DECODE_JSON)(data)
