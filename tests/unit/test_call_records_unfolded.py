"""Per-call records (CallRecorded) are stored by ingest and fold into no run or
endpoint state: at tens of calls per second they were most of what the scheduler,
dispatcher and API folded (bench/cps.py), each writing the endpoint's row again."""

from __future__ import annotations

from datetime import UTC, datetime

import callmeter_events as ev
from callmeter_storage.readmodels import ReadModels

DEFINITION = {"name": "t", "duration_s": 2, "groups": [{"name": "A", "endpoints": 1}]}


def record(run_id: str) -> ev.CallRecorded:
    return ev.CallRecorded(
        run_id=run_id,
        endpoint_id="A-1",
        seq=1,
        attempted_at=datetime(2026, 12, 2, tzinfo=UTC),
        outcome="SUCCESS",
    )


def test_a_call_record_touches_no_read_model_row_but_moves_the_position() -> None:
    models = ReadModels()
    definition = ev.TestDefinition.model_validate(DEFINITION)
    models.fold(1, ev.RunCreated(run_id="r1", test_id="t1", definition=definition))
    before = models.runs.endpoints["r1"]["A-1"]
    assert models.fold(2, record("r1")) == [(None, None, None)]
    assert models.runs.endpoints["r1"]["A-1"] is before
    assert models.runs.position == 2


def test_the_skip_predicate_and_the_filter_name_the_records_subject() -> None:
    subject = record("r1").subject()
    assert ev.is_call_record(subject)
    pattern = ev.call_records().split(".")
    parts = subject.split(".")
    assert all(p in ("*", s) for p, s in zip(pattern, parts, strict=True))
    other = ev.EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="SUCCESS").subject()
    assert not ev.is_call_record(other)


def test_an_endpoints_event_writes_its_runs_row_only_when_it_changed_the_run() -> None:
    # A run's document was written again with each phase of each endpoint (the first
    # calls of a rate group: hundreds a second), though only the endpoint's row changed.
    models = ReadModels()
    definition = ev.TestDefinition.model_validate(DEFINITION)
    models.fold(1, ev.RunCreated(run_id="r1", test_id="t1", definition=definition))
    phase = ev.EndpointPhaseChanged(run_id="r1", endpoint_id="A-1", phase="CALLING")
    assert models.fold(2, phase) == [(None, "r1", "A-1")]
    snap = models.snapshot(models.fold(3, phase), "runs")
    assert snap.runs == [] and [e.endpoint_id for e in snap.endpoints] == ["A-1"]
    done = ev.EndpointFinished(run_id="r1", endpoint_id="A-1", outcome="SUCCESS")
    touched = models.fold(4, done)  # counts the run's finished endpoints
    assert touched == [(None, "r1", "A-1"), (None, "r1", None)]
    snap = models.snapshot(touched, "runs")
    assert [r.finished_endpoints for r in snap.runs] == [1] and len(snap.endpoints) == 1
