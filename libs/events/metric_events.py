"""High-volume per-second samples and SIP traces."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import field_validator, model_validator

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
    str, Literal["send", "recv"], int, datetime,
    tuple[float | None, ...], tuple[int | None, ...], tuple[str | None, ...],
]  # fmt: skip


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
        """One batch of samples of `run_id`; keys a sample lacks are null, as in MetricSample."""
        records = [
            (s.endpoint_id, s.direction, s.seq, s.ts, tuple(map(s.metrics.get, FLOAT_KEYS)),
             tuple(map(s.metrics.get, INT_KEYS)), tuple(map(s.metrics.get, TEXT_KEYS)))
            for s in samples
        ]  # fmt: skip
        return cls(run_id=run_id, worker_id=worker_id, seq=seq, samples=records)  # type: ignore[arg-type]

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
            )  # fmt: skip
            for ep, direction, seq, ts, f, i, t in self.samples
        ]

    def subject(self) -> str:
        return f"callmeter.metrics.{self.run_id}.batch.{_token(self.worker_id)}"

    def dedup_key(self) -> str | None:
        return f"MetricBatch:{self.run_id}:{self.worker_id}:{self.seq}"


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
