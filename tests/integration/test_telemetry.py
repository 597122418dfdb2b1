"""The platform's own telemetry: one trace per run, across the services it passed."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration


def test_a_run_is_one_trace_across_at_least_four_services(tmp_path, nats_server, postgres_server):  # type: ignore[no-untyped-def]
    spans_file = tmp_path / "spans.jsonl"
    p = TestPlatform(tmp_path / "platform", nats_server.url, postgres_server.url)
    # Every service writes its finished spans to one JSON-lines file.
    p.extra_env |= {
        "OTEL_TRACES_EXPORTER": "jsonl",
        "CALLMETER_OTEL_JSONL": str(spans_file),
        "CALLMETER_WORKER_ID": "traced-worker",
    }
    p.start_services()
    try:
        p.wait_for_api()
        p.wait_workers(1)
        run_id = p.run_test(
            {
                "name": "traced",
                "duration_s": 2,
                "groups": [
                    {"name": "A", "endpoints": 1, "calls": "B"},
                    {"name": "B", "endpoints": 1},
                ],
            }
        )
        p.wait_status(run_id, {"COMPLETED"})
        time.sleep(2)  # the last batches are written after the run completes
    finally:
        p.stop()
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    of_run = [s for s in spans if s["attributes"].get("callmeter.run_id") == run_id]
    trace_ids = {s["trace_id"] for s in of_run}
    assert len(trace_ids) == 1, trace_ids  # one trace for the whole run
    services = {s["service"] for s in of_run}
    assert {"api", "scheduler", "dispatcher", "worker", "metrics-ingest"} <= services, services
    # Spans are linked: every parent of a run span is itself a span of the same trace.
    ids = {s["span_id"] for s in spans if s["trace_id"] in trace_ids}
    assert all(s["parent_id"] in ids for s in of_run if s["parent_id"])
