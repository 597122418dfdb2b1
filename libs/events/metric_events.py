"""High-volume per-second samples and SIP traces."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema, field_validator

from callmeter_vocabulary.metrics import BY_KEY, CATALOGUE, KEYS
from callmeter_vocabulary.sample import Sample, SampleHead, explain

from .base import Event

MetricValue = float | int | str | None


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


def _samples(value: Any) -> tuple[SampleHead, ...]:
    """Samples as they are (made from decoded ones), or checked from their arrays as parsed."""
    try:
        return msgspec.convert(value, tuple[Sample, ...])  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise ValueError(explain(exc, in_list=True)) from None


_, _SCHEMAS = msgspec.json.schema_components([Sample], ref_template="{name}")
Samples = Annotated[
    tuple[SampleHead, ...],
    PlainValidator(_samples),
    PlainSerializer(msgspec.to_builtins),
    WithJsonSchema({"type": "array", "items": _SCHEMAS["Sample"]}),
]


class MetricBatch(Event):
    """Many samples of one run from one worker in one message: what workers publish.

    On the wire (`to_msgpack`) a MetricBatch is a MessagePack map whose samples
    are `callmeter_vocabulary.sample.Sample`s, each an array in the catalogue's
    order (so the keys are not named per sample) with its time as a MessagePack
    timestamp: the endpoint host makes it, the supervisor stamps the endpoint id,
    and metrics-ingest decodes the message straight into Samples
    (`callmeter_vocabulary.sample.decode_batch`). Batches written before were the
    same map as JSON; ingest and `codec.decode` still read those (`is_msgpack`).
    """

    stream: ClassVar[str] = "CALLMETER_METRICS"
    content_type: ClassVar[str] = "application/msgpack"
    type: Literal["MetricBatch"] = "MetricBatch"
    schema_version: int = 2
    run_id: str
    worker_id: str
    seq: int  # increasing per run and worker, across worker restarts too (see the batcher)
    samples: Samples

    def to_msgpack(self) -> bytes:
        """The event as MessagePack, the samples written by msgspec (pydantic the header)."""
        head = self.model_dump(exclude={"samples"})
        return _ENCODE({**head, "samples": self.samples})

    def subject(self) -> str:
        return f"callmeter.metrics.{self.run_id}.batch.{_token(self.worker_id)}"

    def dedup_key(self) -> str | None:
        return f"MetricBatch:{self.run_id}:{self.worker_id}:{self.seq}"


_ENCODE = msgspec.msgpack.Encoder().encode


def batch_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 named its keys by kind (float_keys, int_keys, text_keys, each defaulting to the
    catalogue's of that kind) and held [endpoint, direction, seq, ts, floats, ints, texts]
    per record; v2 holds each sample as [ts, endpoint, direction, seq, *catalogue values]."""
    layout = [
        payload.get(f"{kind}_keys", [m.key for m in CATALOGUE if m.kind == kind])
        for kind in ("float", "int", "text")
    ]
    named = [k for keys in layout for k in keys]
    unknown = sorted(set(named) - BY_KEY.keys())
    if unknown:
        raise ValueError(f"unknown metric keys: {', '.join(unknown)}")
    records = []
    for record in payload.get("samples") or []:
        ep, direction, seq, ts, *values = record
        by_key = dict(zip(named, [v for kind in values for v in kind], strict=False))
        records.append([ts, ep, direction, seq, *(by_key.get(k) for k in KEYS)])
    rest = {k: v for k, v in payload.items() if not k.endswith("_keys")}
    return {**rest, "samples": records}


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
