"""Run, endpoint and worker projections: pure folds over the log, told as stories."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from callmeter_events import (
    CallEnded,
    CallEstablished,
    EndpointFinished,
    EndpointPhaseChanged,
    EndpointRegistered,
    RunCompleted,
    RunCreated,
    RunDispatching,
    RunFailed,
    RunQueued,
    RunRejected,
    RunSamplesStored,
    RunStarted,
    RunStopping,
    StopRequested,
    WorkerHeartbeat,
    WorkerLost,
    WorkerOffline,
    WorkerOnline,
)
from callmeter_events import TestDefinition as Definition
from callmeter_projections import RunsProjection, StatusChange, apply_worker
from callmeter_projections.endpoints import evolve

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
PAIR = Definition.model_validate(
    {
        "name": "pair",
        "duration_s": 5,
        "groups": [
            {"name": "A", "endpoints": 1, "calls": "B"},
            {"name": "B", "endpoints": 1},
        ],
    }
)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def fold(*events) -> RunsProjection:  # type: ignore[no-untyped-def]
    p = RunsProjection()
    for seq, event in enumerate(events, 1):
        p.apply(seq, event)
    return p


def started(*more) -> RunsProjection:  # type: ignore[no-untyped-def]
    return fold(
        RunCreated(run_id="r", test_id="t", definition=PAIR, occurred_at=at(0)),
        RunQueued(run_id="r", occurred_at=at(1)),
        RunDispatching(run_id="r", worker_ids=["w2", "w1"], plan={"A-1": "w1", "B-1": "w2"}),
        RunStarted(run_id="r", occurred_at=at(2)),
        *more,
    )


def test_every_transition_is_in_the_history_with_its_time_and_reason():
    p = started(
        EndpointFinished(run_id="r", endpoint_id="A-1", outcome="SUCCESS"),
        EndpointFinished(run_id="r", endpoint_id="B-1", outcome="SUCCESS"),
        RunCompleted(run_id="r", occurred_at=at(9)),
    )
    run = p.runs["r"]
    assert run.history == (
        StatusChange("PENDING", at(0), "run requested: 2 endpoints, 5 s"),
        StatusChange(
            "QUEUED", at(1), "passed validation (2 endpoints); waiting for worker capacity"
        ),
        StatusChange("RUNNING", at(2), "2 endpoints planned on 2 workers: w1, w2"),
        StatusChange("COMPLETED", at(9), "all 2 endpoints finished"),
    )
    assert (run.status, run.reason, run.started_at, run.finished_at) == (
        "COMPLETED",
        "",
        at(2),
        at(9),
    )
    assert (run.finished_endpoints, run.worker_ids) == (2, ("w1", "w2"))


def test_a_stopped_run_records_stopping_then_completed_and_is_marked_stopped():
    p = started(
        StopRequested(run_id="r", occurred_at=at(3)),
        RunStopping(run_id="r", occurred_at=at(3)),
        RunCompleted(run_id="r", stopped=True, occurred_at=at(5)),
    )
    run = p.runs["r"]
    assert [(h.status, h.reason) for h in run.history[-2:]] == [
        ("STOPPING", "stop requested by the user; hanging up active calls"),
        ("COMPLETED", "stopped by the user; everything measured until then is kept"),
    ]
    assert (run.status, run.stopped, run.stop_requested) == ("COMPLETED", True, True)


def test_a_rejected_run_carries_the_reason_and_is_final():
    p = fold(
        RunCreated(run_id="r", test_id="t", definition=PAIR, occurred_at=at(0)),
        RunRejected(run_id="r", reason="no worker online in region 'us'", occurred_at=at(1)),
        RunQueued(run_id="r", occurred_at=at(2)),  # a stale decision must not revive it
        RunStarted(run_id="r", occurred_at=at(3)),
    )
    run = p.runs["r"]
    assert (run.status, run.reason, run.finished_at) == (
        "CANNOT_RUN_FOR_NOW",
        "no worker online in region 'us'",
        at(1),
    )
    assert [h.status for h in run.history] == ["PENDING", "CANNOT_RUN_FOR_NOW"]


def test_terminal_statuses_are_final():
    p = started(
        RunFailed(run_id="r", reason="every worker of the run was lost", occurred_at=at(4)),
        RunCompleted(run_id="r", occurred_at=at(5)),
        StopRequested(run_id="r"),
        RunStopping(run_id="r"),
    )
    run = p.runs["r"]
    assert (run.status, run.reason, run.stop_requested) == (
        "FAILED",
        "every worker of the run was lost",
        False,
    )
    assert [h.status for h in run.history] == ["PENDING", "QUEUED", "RUNNING", "FAILED"]


def test_the_watermark_marks_a_finished_run_without_changing_its_status():
    done = started(RunCompleted(run_id="r", occurred_at=at(5)))
    assert done.runs["r"].samples_stored is None  # finished, samples maybe still in flight
    marked = started(
        RunCompleted(run_id="r", occurred_at=at(5)),
        RunSamplesStored(run_id="r", samples=40, metrics_seq=99),
    )
    run = marked.runs["r"]
    assert (run.status, run.samples_stored, len(run.history)) == ("COMPLETED", 40, 4)


def test_the_first_plan_wins():
    p = fold(
        RunCreated(run_id="r", test_id="t", definition=PAIR),
        RunQueued(run_id="r"),
        RunDispatching(run_id="r", worker_ids=["w1"], plan={"A-1": "w1", "B-1": "w1"}),
        RunDispatching(run_id="r", worker_ids=["w2"], plan={"A-1": "w2", "B-1": "w2"}),
    )
    assert p.runs["r"].worker_ids == ("w1",)
    assert {e.endpoint_id: e.planned_worker for e in p.endpoints["r"].values()} == {
        "A-1": "w1",
        "B-1": "w1",
    }


def test_an_endpoint_collects_its_call_facts_and_closes_on_finish():
    p = started(
        EndpointPhaseChanged(run_id="r", endpoint_id="A-1", phase="INITIALIZING"),
        EndpointRegistered(
            run_id="r", endpoint_id="A-1", contact_uri="sip:a@h", time_to_register_ms=4
        ),
        CallEstablished(run_id="r", endpoint_id="A-1", codec="PCMU", call_setup_ms=12.5),
        CallEnded(run_id="r", endpoint_id="A-1", duration_s=5.0),
        EndpointFinished(run_id="r", endpoint_id="A-1", outcome="SUCCESS", occurred_at=at(8)),
    )
    a1 = p.endpoints["r"]["A-1"]
    assert (a1.phase, a1.outcome, a1.contact_uri, a1.codec, a1.sip_code) == (
        "CLOSED",
        "SUCCESS",
        "sip:a@h",
        "PCMU",
        200,
    )
    assert (a1.time_to_register_ms, a1.call_setup_ms, a1.call_duration_s, a1.finished_at) == (
        4,
        12.5,
        5.0,
        at(8),
    )
    assert (a1.planned_worker, a1.late_events) == ("w1", 0)


def test_late_events_after_finish_are_recorded_not_counted_again():
    # A-1's worker was declared lost; later that worker comes back and reports on A-1.
    p = started(
        EndpointFinished(run_id="r", endpoint_id="A-1", outcome="WORKER_LOST", reason="w1 lost"),
        EndpointPhaseChanged(run_id="r", endpoint_id="A-1", phase="DISCONNECTING"),
        CallEnded(run_id="r", endpoint_id="A-1", duration_s=5.0),
        EndpointFinished(run_id="r", endpoint_id="A-1", outcome="SUCCESS"),
    )
    a1 = p.endpoints["r"]["A-1"]
    # The verdict stands, every late report is counted as late, the run counts A-1 once.
    assert (a1.outcome, a1.reason, a1.phase, a1.call_duration_s, a1.late_events) == (
        "WORKER_LOST",
        "w1 lost",
        "CLOSED",
        None,
        3,
    )
    assert p.runs["r"].finished_endpoints == 1


def test_events_for_unknown_runs_or_endpoints_touch_nothing():
    p = started()
    assert p.apply(10, EndpointFinished(run_id="zz", endpoint_id="A-1", outcome="SUCCESS")) == (
        None,
        None,
    )
    assert p.apply(11, EndpointFinished(run_id="r", endpoint_id="Z-9", outcome="SUCCESS")) == (
        "r",
        None,
    )
    assert (p.runs["r"].finished_endpoints, p.position) == (0, 11)


def test_worker_registry_online_heartbeat_lost_and_back():
    w = apply_worker(WorkerOnline(worker_id="w1", region="eu", capacity=8, occurred_at=at(0)), None)
    assert w is not None and (w.status, w.free_slots, w.region) == ("ONLINE", 8, "eu")
    w = apply_worker(
        WorkerHeartbeat(
            worker_id="w1",
            region="eu",
            capacity=8,
            free_slots=5,
            load=0.5,
            seq=7,
            occurred_at=at(1),
        ),
        w,
    )
    assert w is not None and (w.free_slots, w.seq, w.last_seen) == (5, 7, at(1))
    # A verdict about an older beat does not undo a newer one...
    assert apply_worker(WorkerLost(worker_id="w1", reason="x", last_seq=6), w) == w
    # ...a current one does; and a beat after it brings the worker back.
    w = apply_worker(WorkerLost(worker_id="w1", reason="x", last_seq=7), w)
    assert w is not None and (w.status, w.free_slots) == ("LOST", 0)
    w = apply_worker(
        WorkerHeartbeat(
            worker_id="w1",
            region="eu",
            capacity=8,
            free_slots=8,
            load=0.1,
            seq=8,
            occurred_at=at(9),
        ),
        w,
    )
    assert w is not None and w.status == "ONLINE"
    w = apply_worker(WorkerOffline(worker_id="w1"), w)
    assert w is not None and w.status == "OFFLINE"


def test_evolve_is_dataclasses_replace_without_its_cost():
    p = started()
    b1 = p.endpoints["r"]["B-1"]
    assert evolve(b1, phase="INCALL", codec="PCMA") == replace(b1, phase="INCALL", codec="PCMA")
    assert b1.phase is None  # the original is untouched


def test_a_run_is_marked_simulated_by_an_endpoint_on_a_simulated_worker():
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r1", test_id="t", definition=PAIR))
    p.apply(2, EndpointPhaseChanged(run_id="r1", endpoint_id="A-1", phase="INITIALIZING"))
    assert p.runs["r1"].simulated is False
    p.apply(
        3,
        EndpointPhaseChanged(run_id="r1", endpoint_id="B-1", phase="INITIALIZING", simulated=True),
    )
    assert p.runs["r1"].simulated is True
    assert p.endpoints["r1"]["B-1"].phase == "INITIALIZING"
