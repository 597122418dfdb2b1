"""JetStream stream definitions. Services create them idempotently at start-up."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 24 * 3600


@dataclass(frozen=True)
class StreamDef:
    name: str
    subjects: tuple[str, ...]
    max_age_s: int  # 0 = keep forever
    duplicate_window_s: int = 120


EVENTS = StreamDef("CALLMETER_EVENTS", ("callmeter.test.>", "callmeter.run.>"), max_age_s=0)
WORKERS = StreamDef("CALLMETER_WORKERS", ("callmeter.worker.>",), max_age_s=7 * DAY)
METRICS = StreamDef("CALLMETER_METRICS", ("callmeter.metrics.>",), max_age_s=2 * DAY)
TRACES = StreamDef("CALLMETER_TRACES", ("callmeter.trace.>",), max_age_s=14 * DAY)
# Users, organisations, members, API keys, the audit trail: kept forever, read by the API only.
ACCESS = StreamDef("CALLMETER_ACCESS", ("callmeter.access.>",), max_age_s=0)
DEADLETTER = StreamDef("CALLMETER_DEADLETTER", ("callmeter.deadletter.>",), max_age_s=30 * DAY)

ALL_STREAMS: tuple[StreamDef, ...] = (EVENTS, WORKERS, METRICS, TRACES, ACCESS, DEADLETTER)

# metrics-ingest's durable consumer on METRICS: its lag is what /readyz bounds.
INGEST_DURABLE = "metrics-ingest"


def deadletter_subject(service: str, original_subject: str) -> str:
    """Where a service parks a message it could not decode or handle."""
    return f"callmeter.deadletter.{service}.{original_subject}"
