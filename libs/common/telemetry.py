"""OpenTelemetry for the platform itself: one trace per run across services.

Off unless OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER say otherwise:
`console` prints spans (debugging), `jsonl` appends them to the file named by
CALLMETER_OTEL_JSONL (used by the tests to see spans from every process),
`otlp` needs the opentelemetry-exporter-otlp package. The trace context
travels in NATS headers (W3C traceparent): whatever a service publishes for a
run is parented to the last context it received for that run.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context

log = logging.getLogger(__name__)
current_run: contextvars.ContextVar[str] = contextvars.ContextVar("current_run", default="-")
# The trace context of each run a service has seen, newest last; bounded, since a
# long-lived service sees runs without end and old runs stop sending messages.
_run_contexts: OrderedDict[str, Context] = OrderedDict()
MAX_RUN_CONTEXTS = 10_000
_configured = False


class JsonLinesSpanExporter:
    """Appends finished spans as JSON lines to one file shared by all processes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = [
            json.dumps(
                {
                    "name": s.name,
                    "service": s.resource.attributes.get("service.name"),
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                    "attributes": dict(s.attributes or {}),
                }
            )
            for s in spans
        ]
        with self._lock, open(self.path, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class RunIdFilter(logging.Filter):
    """Puts the run being handled into every log record (`%(run_id)s`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = current_run.get()
        return True


def setup(service: str) -> None:
    """Configure tracing and metrics from the standard OTEL_ variables (idempotent)."""
    global _configured
    if _configured:
        return
    _configured = True
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    if exporter_name != "none":
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )

        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if exporter_name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif exporter_name == "jsonl":
            path = os.environ["CALLMETER_OTEL_JSONL"]
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))  # type: ignore[arg-type]
        elif exporter_name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    if os.environ.get("OTEL_METRICS_EXPORTER", "none") == "console":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            PeriodicExportingMetricReader,
        )

        reader = PeriodicExportingMetricReader(
            ConsoleMetricExporter(), export_interval_millis=10_000
        )
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


class Meters:
    """The platform's service metrics (no-ops unless a meter provider is configured)."""

    def __init__(self) -> None:
        meter = metrics.get_meter("callmeter")
        self.events_handled = meter.create_counter(
            "callmeter.events.handled", description="events decoded and handled"
        )
        self.batch_size = meter.create_histogram(
            "callmeter.consumer.batch_size", description="messages per fetched batch"
        )
        self.consumer_lag = meter.create_histogram(
            "callmeter.consumer.lag", description="messages still pending after a fetch"
        )


_meters: Meters | None = None


def meters() -> Meters:
    global _meters
    if _meters is None:
        _meters = Meters()
    return _meters


def _keep(run_id: str, ctx: Context) -> None:
    _run_contexts[run_id] = ctx
    _run_contexts.move_to_end(run_id)
    while len(_run_contexts) > MAX_RUN_CONTEXTS:
        _run_contexts.popitem(last=False)


def remember(run_id: str | None, headers: Mapping[str, str] | None) -> None:
    """Keep the trace context a message brought for its run (parent of what we publish)."""
    if run_id:
        current_run.set(run_id)
        if headers and "traceparent" in headers:
            _keep(run_id, propagate.extract(dict(headers)))


def publish_headers(service: str, event_type: str, run_id: str | None) -> dict[str, str]:
    """A span for this publish, parented to the run's context; its traceparent to send."""
    headers: dict[str, str] = {}
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return headers  # tracing off: no spans, no headers
    parent = _run_contexts.get(run_id) if run_id else None
    tracer = trace.get_tracer("callmeter")
    attributes = {"callmeter.run_id": run_id or "", "callmeter.event": event_type}
    with tracer.start_as_current_span(
        f"{service} {event_type}", context=parent, attributes=attributes
    ) as span:
        ctx = trace.set_span_in_context(span)
        propagate.inject(headers, context=ctx)
        if run_id and run_id not in _run_contexts:
            _keep(run_id, ctx)  # the first publisher of a run starts its trace
    return headers


@contextlib.contextmanager
def handling(service: str, what: str, run_ids: Iterable[str]) -> Iterator[None]:
    """Spans (one per run) around handling a batch that touched these runs."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield
        return
    tracer = trace.get_tracer("callmeter")
    spans = [
        tracer.start_span(
            f"{service} {what}", context=_run_contexts.get(r), attributes={"callmeter.run_id": r}
        )
        for r in set(run_ids)
    ]
    try:
        yield
    finally:
        for span in spans:
            span.end()
