"""High-volume per-second samples and SIP traces."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from itertools import chain
from operator import attrgetter, itemgetter
from types import NoneType
from typing import Any, ClassVar, Literal

import orjson
from pydantic import TypeAdapter, ValidationError, field_validator, model_validator

from .base import Event
from .metrics_catalogue import BY_KEY, CATALOGUE

MetricValue = float | int | str | None
# The catalogue's keys by kind, in catalogue order: a MetricBatch's default layout.
FLOAT_KEYS, INT_KEYS, TEXT_KEYS = (
    tuple(m.key for m in CATALOGUE if m.kind == kind) for kind in ("float", "int", "text")
)
# (endpoint_id, direction, seq, ts, float values, int values, text values); the values
# follow the batch's float_keys, int_keys and text_keys. Typed by kind, so a batch
# serialises and validates without a union per value.
SampleRecord = tuple[
    str,
    Literal["send", "recv"],
    int,
    datetime,
    tuple[float | None, ...],
    tuple[int | None, ...],
    tuple[str | None, ...],
]


class MetricSample(Event):
    """One second of one direction of one endpoint; every catalogue key, null when unknown."""

    stream: ClassVar[str] = "CALLMETER_METRICS"
    type: Literal["MetricSample"] = "MetricSample"
    run_id: str
    endpoint_id: str
    direction: Literal["send", "recv"]
    seq: int
    ts: datetime
    metrics: dict[str, MetricValue]

    @field_validator("metrics")
    @classmethod
    def _known_keys(cls, value: dict[str, MetricValue]) -> dict[str, MetricValue]:
        unknown = sorted(set(value) - BY_KEY.keys())
        if unknown:
            raise ValueError(f"unknown metric keys: {', '.join(unknown)}")
        return value

    def subject(self) -> str:
        return f"callmeter.metrics.{self.run_id}.{self.endpoint_id}"

    def dedup_key(self) -> str | None:
        return f"MetricSample:{self.run_id}:{self.endpoint_id}:{self.direction}:{self.seq}"


class MetricBatch(Event):
    """Many MetricSamples of one run from one worker in one message: what workers publish.

    The metric keys are named once per batch, by kind, and every record carries
    its values in that order: half the bytes of the same samples sent one by
    one, and ingest decodes it without building a model per sample.
    """

    stream: ClassVar[str] = "CALLMETER_METRICS"
    type: Literal["MetricBatch"] = "MetricBatch"
    run_id: str
    worker_id: str
    seq: int  # increasing per run and worker, across worker restarts too (see the batcher)
    float_keys: tuple[str, ...] = FLOAT_KEYS
    int_keys: tuple[str, ...] = INT_KEYS
    text_keys: tuple[str, ...] = TEXT_KEYS
    samples: tuple[SampleRecord, ...]

    @model_validator(mode="after")
    def _consistent(self) -> MetricBatch:
        problem = layout_problem(self.float_keys, self.int_keys, self.text_keys)
        if problem:
            raise ValueError(problem)
        sizes = (len(self.float_keys), len(self.int_keys), len(self.text_keys))
        if any((len(r[4]), len(r[5]), len(r[6])) != sizes for r in self.samples):
            raise ValueError("samples: every record needs one value per key")
        return self

    @classmethod
    def pack(
        cls, run_id: str, worker_id: str, seq: int, samples: Sequence[MetricSample]
    ) -> MetricBatch:
        """One batch of samples of `run_id`; keys a sample lacks are null, as in MetricSample.

        Validating every value of every record was a large part of a worker's
        publishing CPU, and values from a validated MetricSample nearly always
        pass as they are. So when a cheap look at the whole batch (`_as_validated`)
        tells what validation would make of every value, the records go in as
        that; else the validating constructor decides (and raises ValidationError
        for a value of the wrong kind, which the batcher relies on). Either way
        the same batch (tests/unit/test_batch_fast_path.py).
        """
        records = [_record(s) for s in samples]
        checked = _as_validated(records)
        if checked is None:
            return cls(run_id=run_id, worker_id=worker_id, seq=seq, samples=records)  # type: ignore[arg-type]
        # The header still goes through validation (event id, layout); only the records
        # skip it (each has one value per key: _record takes them by the layout's keys).
        batch = cls(run_id=run_id, worker_id=worker_id, seq=seq, samples=())
        return batch.model_copy(update={"samples": checked})

    def to_json(self) -> bytes:
        """The bytes `model_dump_json` gives, written by orjson: about twice as fast.

        pydantic's and orjson's JSON agree byte for byte on what a batch holds
        (shortest round-trip floats, UTF-8 text, "Z" for UTC with OPT_UTC_Z, no
        offset for naive times); where they would not (an offset with seconds,
        a time zone other than a fixed offset) or orjson cannot write a value
        (an int beyond 64 bits), pydantic writes it.
        """
        zones = set(map(attrgetter("tzinfo"), map(itemgetter(3), self.samples)))
        if all(tz is None or _whole_minutes(tz) for tz in zones):
            head = self.model_dump(mode="json", exclude={"samples"})
            try:
                return orjson.dumps({**head, "samples": self.samples}, option=orjson.OPT_UTC_Z)
            except orjson.JSONEncodeError:
                pass
        return self.model_dump_json().encode()

    def unpack(self) -> list[MetricSample]:
        """The samples one by one, for consumers that want them so."""
        keys = self.float_keys + self.int_keys + self.text_keys
        return [
            MetricSample(
                run_id=self.run_id,
                endpoint_id=ep,
                direction=direction,
                seq=seq,
                ts=ts,
                occurred_at=ts,
                metrics=dict(zip(keys, f + i + t, strict=True)),
            )
            for ep, direction, seq, ts, f, i, t in self.samples
        ]

    def subject(self) -> str:
        return f"callmeter.metrics.{self.run_id}.batch.{_token(self.worker_id)}"

    def dedup_key(self) -> str | None:
        return f"MetricBatch:{self.run_id}:{self.worker_id}:{self.seq}"


def _values(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """`keys`' values in a mapping as a tuple, by itemgetter (in C); KeyError if one is missing."""
    if len(keys) > 1:
        return itemgetter(*keys)
    if keys:  # itemgetter of one key returns the bare value
        get = itemgetter(keys[0])
        return lambda m: (get(m),)
    return lambda m: ()


_FLOATS, _INTS, _TEXTS = _values(FLOAT_KEYS), _values(INT_KEYS), _values(TEXT_KEYS)


def _record(s: MetricSample) -> tuple[Any, ...]:
    m = s.metrics
    try:
        return (s.endpoint_id, s.direction, s.seq, s.ts, _FLOATS(m), _INTS(m), _TEXTS(m))
    except KeyError:  # a sample without every key: the missing ones are null
        return (
            s.endpoint_id,
            s.direction,
            s.seq,
            s.ts,
            tuple(map(m.get, FLOAT_KEYS)),
            tuple(map(m.get, INT_KEYS)),
            tuple(map(m.get, TEXT_KEYS)),
        )


# What validation makes of a record's float values: used for those holding ints.
_FLOAT_VALUES = TypeAdapter(list[tuple[float | None, ...]])


def _as_validated(records: list[tuple[Any, ...]]) -> tuple[SampleRecord, ...] | None:
    """The records as MetricBatch validation would leave them, or None to let it decide.

    Validation keeps a str, an int (not a bool), a float and None of the field's
    kind as they are: checked by sets of exact types, whole batch columns at once
    (the floats per record, to find the records holding ints). An int in a float
    key (recv samples' jb_*_delay_ms are ints) becomes a float: those records'
    float values alone go through the same validation. Anything else (a bool, a
    numeric string, a subclass, a value of the wrong kind, an unknown direction)
    is left to validation of the whole batch, which converts it or raises.
    """
    if not records:
        return None
    endpoints, directions, seqs, times, floats, ints, texts = zip(*records, strict=True)
    float_types = [set(map(type, f)) for f in floats]
    if not (
        set(map(type, chain(endpoints, directions))) == {str}
        and set(directions) <= {"send", "recv"}
        and set(map(type, seqs)) == {int}
        and set(map(type, times)) == {datetime}
        and set().union(*float_types) <= {float, int, NoneType}
        and set(map(type, chain.from_iterable(ints))) <= {int, NoneType}
        and set(map(type, chain.from_iterable(texts))) <= {str, NoneType}
    ):
        return None
    widen = [i for i, types in enumerate(float_types) if int in types]
    if widen:
        try:
            widened = _FLOAT_VALUES.validate_python([floats[i] for i in widen])
        except ValidationError:  # an int no float holds
            return None
        records = records.copy()
        for i, values in zip(widen, widened, strict=True):
            records[i] = (*records[i][:4], values, *records[i][5:])
    return tuple(records)  # type: ignore[arg-type]


def _whole_minutes(tz: object) -> bool:
    """A fixed offset of whole minutes: one that pydantic and orjson write alike."""
    if type(tz) is not timezone:
        return False
    offset = tz.utcoffset(None)
    return offset is not None and offset % timedelta(minutes=1) == timedelta(0)


def layout_problem(floats: Sequence[str], ints: Sequence[str], texts: Sequence[str]) -> str:
    """Why a batch's key lists are unusable ("" when they are fine): unknown, misfiled, twice."""
    named = [*floats, *ints, *texts]
    unknown = sorted(set(named) - BY_KEY.keys())
    if unknown:
        return f"unknown metric keys: {', '.join(unknown)}"
    if len(set(named)) != len(named):
        return "a metric key is named twice"
    for kind, keys in (("float", floats), ("int", ints), ("text", texts)):
        wrong = [k for k in keys if BY_KEY[k].kind != kind]
        if wrong:
            return f"{kind}_keys: not {kind} metrics: {', '.join(wrong)}"
    return ""


def _token(name: str) -> str:
    """A name as one NATS subject token (worker ids may hold dots: host names)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class SipMessage(Event):
    stream: ClassVar[str] = "CALLMETER_TRACES"
    type: Literal["SipMessage"] = "SipMessage"
    run_id: str
    endpoint_id: str
    direction: Literal["in", "out"]
    ts: datetime
    text: str

    def subject(self) -> str:
        return f"callmeter.trace.{self.run_id}.{self.endpoint_id}"
