"""High-volume per-second samples and SIP traces."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import field_validator

from .base import Event
from .metrics_catalogue import BY_KEY

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
