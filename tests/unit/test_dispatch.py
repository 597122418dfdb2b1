"""The dispatcher's rules, told as stories: queue, phased dispatch, loss, stop. No servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callmeter_common.reconciler import World
from callmeter_dispatcher.dispatch import (
    NO_CALL_MARGIN_S,
    Timing,
    decide,
)
from callmeter_dispatcher.settings import DispatcherSettings
from callmeter_events import (
    EndpointAssigned,
    EndpointFinished,
    EndpointRegistered,
    Event,
    ReceiverWaitExtended,
    RegistrationFailed,
    RunCompleted,
    RunCreated,
    RunQueued,
    RunStopping,
    StopRequested,
    WorkerHeartbeat,
    WorkerLost,
    WorkerOnline,
)
from callmeter_events import TestDefinition as Definition
from callmeter_events.testdef import CALLER_START_S, HOST_START_PACE_S, PATTERN_LEAD_S
from callmeter_worker.supervisor.settings import WorkerSettings

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
TIMING = Timing(heartbeat_s=1.0, missed_heartbeats=3, receiver_wait_s=30.0)
PAIR = {
    "name": "pair",
    "duration_s": 10,
    "groups": [
        {"name": "A", "endpoints": 2, "calls": "B"},
        {"name": "B", "endpoints": 2},
    ],
}


class Story:
    """The dispatcher's world, folded from events; `step` folds back what it decides."""

    def __init__(self, capacity: int = 8, workers: int = 2) -> None:
        self.world, self.seq, self.now = World(), 0, T0
        for i in range(1, workers + 1):
            self.add(WorkerOnline(worker_id=f"w{i}", capacity=capacity, occurred_at=T0))

    def add(self, *events: Event) -> Story:
        for event in events:
            self.seq += 1
            self.world.apply(self.seq, event)
        return self

    def queue(self, run_id: str, at: datetime = T0, **definition: Any) -> Story:
        d = Definition.model_validate({**PAIR, **definition})
        return self.add(
            RunCreated(run_id=run_id, test_id="t", definition=d, occurred_at=at),
            RunQueued(run_id=run_id, occurred_at=at),
        )

    def decide(self) -> list[Event]:
        return list(decide(self.world, self.now, TIMING))

    def step(self) -> list[tuple[str, ...]]:
        """Decide, fold the decisions back (as the log would), and summarise them."""
        events = self.decide()
        self.add(*events)
        return [summary(e) for e in events]

    def beat(self, *workers: str) -> Story:
        return self.add(
            *(
                WorkerHeartbeat(
                    worker_id=w, capacity=8, free_slots=8, load=0.1, seq=1, occurred_at=self.now
                )
                for w in workers
            )
        )

    def register(self, run_id: str, *endpoints: str) -> Story:
        return self.add(
            *(
                EndpointRegistered(run_id=run_id, endpoint_id=e, contact_uri=f"sip:{e}@10.0.0.1")
                for e in endpoints
            )
        )

    def endpoint(self, run_id: str, endpoint: str) -> Any:
        return self.world.runs.endpoints[run_id][endpoint]


def summary(e: Event) -> tuple[str, ...]:
    """The decision in one line: event type and what it is about."""
    name = type(e).__name__
    if name == "EndpointAssigned":
        return (name, e.endpoint_id, e.worker_id, e.config.role, e.config.target_uri or "")  # type: ignore[attr-defined]
    if name == "EndpointFinished":
        return (name, e.endpoint_id, e.outcome, e.reason)  # type: ignore[attr-defined]
    if name == "RunDispatching":
        return (name, e.run_id, *sorted(e.plan.items()))  # type: ignore[attr-defined]
    if name == "WorkerLost":
        return (name, e.worker_id)  # type: ignore[attr-defined]
    return (name, getattr(e, "run_id", ""))


# --- queue ---------------------------------------------------------------------------


def test_a_queued_run_gets_a_plan_spread_over_the_workers():
    story = Story().queue("r1")
    assert story.step() == [
        ("RunDispatching", "r1", ("A-1", "w1"), ("A-2", "w2"), ("B-1", "w1"), ("B-2", "w2"))
    ]


def test_busy_workers_make_runs_wait_first_in_first_out():
    # One worker with 8 slots; three runs arrive: 8 endpoints, 8 endpoints, then 2.
    story = Story(capacity=8, workers=1)
    story.queue("big1", T0, groups=[{"name": "A", "endpoints": 8}])
    story.queue("big2", T0 + timedelta(seconds=1), groups=[{"name": "A", "endpoints": 8}])
    story.queue("small", T0 + timedelta(seconds=2), groups=[{"name": "A", "endpoints": 2}])
    # Only the first fits; the small one would fit nowhere either: it waits its turn.
    assert [s[:2] for s in story.step()] == [("RunDispatching", "big1")]
    assert [s[:2] for s in story.step()] == [
        *(("EndpointAssigned", f"A-{i}") for i in range(1, 9)),
        ("RunStarted", "big1"),
    ]
    story.step()
    assert story.step() == []
    # big1 finishes: its slots free up and big2 (not the smaller, later run) goes next.
    story.add(
        *(
            EndpointFinished(run_id="big1", endpoint_id=f"A-{i}", outcome="SUCCESS")
            for i in range(1, 9)
        ),
        RunCompleted(run_id="big1"),
    )
    assert [s[:2] for s in story.step()] == [("RunDispatching", "big2")]


# --- phased dispatch -------------------------------------------------------------------


def test_receivers_go_first_and_callers_follow_with_their_receivers_uris():
    story = Story().queue("r1")
    story.step()  # planned
    # Phase 1: receivers only, then the run is started.
    assert story.step() == [
        ("EndpointAssigned", "B-1", "w1", "receiver", ""),
        ("EndpointAssigned", "B-2", "w2", "receiver", ""),
        ("RunStarted", "r1"),
    ]
    # Callers wait while the callee group is not ready.
    assert story.step() == []
    story.register("r1", "B-1")
    assert story.step() == []
    # The whole group B is ready: each caller dials its own receiver's contact URI.
    story.register("r1", "B-2")
    assert story.step() == [
        ("EndpointAssigned", "A-1", "w1", "caller", "sip:B-1@10.0.0.1"),
        ("EndpointAssigned", "A-2", "w2", "caller", "sip:B-2@10.0.0.1"),
    ]
    assert story.step() == []


def test_receivers_wait_for_a_call_duration_plus_buildup_plus_a_margin_callers_do_not():
    story = Story().queue("r1", buildup_s=4)
    story.step()
    assigned = {e.endpoint_id: e.config for e in story.decide() if hasattr(e, "config")}
    assert {c.call_wait_s for c in assigned.values()} == {10 + 4 + NO_CALL_MARGIN_S}
    story.step()
    story.register("r1", "B-1", "B-2")
    callers = [e.config for e in story.decide() if hasattr(e, "config")]
    assert len(callers) == 2 and all(c.call_wait_s is None for c in callers)


def test_a_receiver_that_fails_to_register_fails_its_caller_instead_of_leaving_it_hanging():
    story = Story().queue("r1")
    story.step(), story.step()
    story.register("r1", "B-1")
    story.add(
        RegistrationFailed(run_id="r1", endpoint_id="B-2", sip_code=403, reason="Forbidden"),
        EndpointFinished(
            run_id="r1",
            endpoint_id="B-2",
            outcome="REGISTRATION_FAILED",
            reason="Forbidden",
            sip_code=403,
        ),
    )
    assert story.step() == [
        ("EndpointAssigned", "A-1", "w1", "caller", "sip:B-1@10.0.0.1"),
        (
            "EndpointFinished",
            "A-2",
            "CALL_FAILED",
            "callee B-2 ended before the call: REGISTRATION_FAILED Forbidden",
        ),
    ]
    assert story.endpoint("r1", "A-2").sip_code == 403


def test_receivers_that_never_get_ready_time_out_their_callers_only():
    story = Story().queue("r1")
    story.step(), story.step()
    story.register("r1", "B-1")
    # Just within the receiver wait, nothing happens.
    story.now = T0 + timedelta(seconds=30)
    story.beat("w1", "w2")
    assert story.step() == []
    # Past it: the caller whose receiver is ready dials; the other one times out.
    story.now = T0 + timedelta(seconds=31)
    story.beat("w1", "w2")
    assert story.step() == [
        ("EndpointAssigned", "A-1", "w1", "caller", "sip:B-1@10.0.0.1"),
        ("EndpointFinished", "A-2", "TIMEOUT", "callee B-2 not ready after 31 s"),
    ]


def test_sip_accounts_are_given_one_per_endpoint():
    accounts = [{"username": f"10{i}", "password_ref": f"sec_{i:024x}"} for i in range(3)]
    group = {"name": "A", "endpoints": 3, "registrar": {"host": "pbx"}, "accounts": accounts}
    story = Story().queue("r1", groups=[group])
    story.step()
    assigned = [e for e in story.decide() if type(e).__name__ == "EndpointAssigned"]
    assert [
        (e.endpoint_id, e.config.username, e.config.account.username, e.config.account.password_ref)  # type: ignore[attr-defined]
        for e in assigned
    ] == [
        ("A-1", "100", "100", "sec_" + "0" * 24),
        ("A-2", "101", "101", "sec_" + "0" * 23 + "1"),
        ("A-3", "102", "102", "sec_" + "0" * 23 + "2"),
    ]


# --- worker loss ---------------------------------------------------------------------


def test_a_silent_worker_is_lost_and_only_its_endpoints_end_worker_lost():
    story = Story().queue("r1")
    story.step(), story.step()
    story.register("r1", "B-1", "B-2")
    story.step()  # callers out: A-1/B-1 on w1, A-2/B-2 on w2
    # w2 stops beating. After 3 missed beats (plus slack) it is declared lost.
    story.now = T0 + timedelta(seconds=3.4)
    story.beat("w1")
    assert story.step() == []
    story.now = T0 + timedelta(seconds=3.6)
    story.beat("w1")
    assert story.step() == [("WorkerLost", "w2")]
    # Its endpoints, and only those, finish WORKER_LOST; w1's keep running.
    assert story.step() == [
        ("EndpointFinished", "A-2", "WORKER_LOST", "worker w2 lost before this endpoint finished"),
        ("EndpointFinished", "B-2", "WORKER_LOST", "worker w2 lost before this endpoint finished"),
    ]
    assert story.step() == []
    assert (story.endpoint("r1", "A-1").outcome, story.endpoint("r1", "B-1").outcome) == (
        None,
        None,
    )


def test_no_worker_is_lost_while_the_workers_stream_cannot_be_heard():
    """A NATS node failing over silences every worker at once: that is not their loss."""
    story = Story()
    story.world.workers_heard_since = None  # the stream electing a new leader
    story.now = T0 + timedelta(seconds=8)
    assert story.step() == []
    # Heard again from T0+8 s: silence counts from there, not from the last beats.
    story.world.workers_heard_since = story.now
    story.now = T0 + timedelta(seconds=11)
    assert story.step() == []
    story.beat("w1")
    story.now = T0 + timedelta(seconds=11.6)
    assert story.step() == [("WorkerLost", "w2")]


def test_a_worker_back_after_being_lost_gets_no_second_verdict_and_no_replan():
    story = Story().queue("r1")
    story.step(), story.step()
    story.add(WorkerLost(worker_id="w2", reason="missed 3 heartbeats", last_seq=0))
    story.step()
    # w2 comes back and reports on its old endpoint: the verdict stands, the report is late.
    story.beat("w2")
    story.add(EndpointFinished(run_id="r1", endpoint_id="B-2", outcome="SUCCESS"))
    assert story.step() == []
    b2 = story.endpoint("r1", "B-2")
    assert (b2.outcome, b2.late_events) == ("WORKER_LOST", 1)
    # Two endpoints were on w2 (A-2 planned, B-2 running): each is counted once.
    assert story.world.runs.runs["r1"].finished_endpoints == 2


def test_a_planned_endpoint_on_a_lost_worker_is_not_assigned_to_it():
    story = Story().queue("r1")
    story.step()  # planned, nothing assigned yet
    story.add(WorkerLost(worker_id="w2", reason="gone", last_seq=0))
    assert story.step() == [
        ("EndpointFinished", "A-2", "WORKER_LOST", "worker w2 lost before this endpoint finished"),
        ("EndpointFinished", "B-2", "WORKER_LOST", "worker w2 lost before this endpoint finished"),
        ("EndpointAssigned", "B-1", "w1", "receiver", ""),
        ("RunStarted", "r1"),
    ]


def test_workers_and_dispatcher_read_the_same_heartbeat_setting(monkeypatch):
    monkeypatch.setenv("CALLMETER_HEARTBEAT_S", "2.5")
    assert WorkerSettings().heartbeat_s == DispatcherSettings().heartbeat_s == 2.5


# --- stop ----------------------------------------------------------------------------


def test_stop_finishes_unstarted_endpoints_and_leaves_running_ones_to_their_workers():
    story = Story().queue("r1")
    story.step(), story.step()  # receivers out, callers waiting
    story.add(StopRequested(run_id="r1"))
    assert story.step() == []  # nothing more goes out once a stop is asked for
    story.add(RunStopping(run_id="r1"))
    reason = "run stopped before this endpoint started"
    assert story.step() == [
        ("EndpointFinished", "A-1", "COMPLETED_WITH_WARNINGS", reason),
        ("EndpointFinished", "A-2", "COMPLETED_WITH_WARNINGS", reason),
    ]
    assert story.step() == []


def test_a_stop_ends_even_when_a_worker_never_confirms_its_hangups():
    story = Story().queue("r1")
    story.step(), story.step()
    story.register("r1", "B-1", "B-2")
    story.step()  # everyone is out and calling
    story.add(StopRequested(run_id="r1"), RunStopping(run_id="r1", occurred_at=T0))
    # w1 confirms its two hangups; w2 stays silent (but keeps beating).
    story.add(
        *(EndpointFinished(run_id="r1", endpoint_id=e, outcome="SUCCESS") for e in ("A-1", "B-1"))
    )
    story.now = T0 + timedelta(seconds=25)
    story.beat("w1", "w2")
    assert story.step() == []
    story.now = T0 + timedelta(seconds=26)
    story.beat("w1", "w2")
    reason = "worker w2 did not confirm the hangup within 25 s of the stop"
    assert story.step() == [
        ("EndpointFinished", "A-2", "TEARDOWN_ERROR", reason),
        ("EndpointFinished", "B-2", "TEARDOWN_ERROR", reason),
    ]


def test_a_run_stopped_while_queued_is_never_dispatched():
    story = Story(capacity=1, workers=1).queue("r1")
    story.add(StopRequested(run_id="r1"))
    assert story.step() == []


def test_a_patterned_group_times_its_calls_from_one_instant_and_its_receivers_know():
    groups = [
        {
            "name": "A",
            "endpoints": 2,
            "calls": "B",
            "pattern": {"kind": "rate", "cps": 2, "hold_s": 1},
        },
        {"name": "B", "endpoints": 2},
    ]
    story = Story().queue("r1", buildup_s=4, groups=groups)
    story.step()
    receivers = [e.config for e in story.decide() if hasattr(e, "config")]
    assert {c.pattern.kind for c in receivers} == {"rate"}  # they take call after call
    assert all(c.calls_from is None for c in receivers)
    story.step()
    story.register("r1", "B-1", "B-2")
    callers = [e.config for e in story.decide() if hasattr(e, "config")]
    assert [(c.group_index, c.group_size) for c in callers] == [(0, 2), (1, 2)]
    # one instant for the group, once their hosts have had time to start (1 host: 0.8 s)
    lead = PATTERN_LEAD_S + HOST_START_PACE_S
    assert {c.calls_from for c in callers} == {T0 + timedelta(seconds=lead)}
    assert {c.start_delay_s for c in callers} == {0.0}  # the pattern spreads the calls


def test_a_patterned_callers_dispatch_extends_its_receivers_first_call_wait():
    """A receiver's wait for its first call counts from its caller going out, not only
    from its own readiness: on a loaded machine a caller's host starts long after."""
    groups = [
        {"name": "A", "endpoints": 2, "calls": "B", "pattern": {"kind": "repeat", "hold_s": 1}},
        {"name": "B", "endpoints": 2},
    ]
    story = Story().queue("r1", buildup_s=4, groups=groups)
    story.step()
    story.step()  # receivers out at T0
    story.register("r1", "B-1")
    story.now = T0 + timedelta(seconds=25)  # B-2 ready late: callers go out 25 s in
    story.beat("w1", "w2").register("r1", "B-2")
    events = story.decide()
    waits = [e for e in events if type(e).__name__ == "ReceiverWaitExtended"]
    # each one right after its caller's assignment, on the receiver's worker
    assert [summary(e)[:2] for e in events] == [
        ("EndpointAssigned", "A-1"),
        ("ReceiverWaitExtended", "r1"),
        ("EndpointAssigned", "A-2"),
        ("ReceiverWaitExtended", "r1"),
    ]
    wait_s = 10 + 4 + NO_CALL_MARGIN_S
    # its host may take CALLER_START_S to start and register, then its pattern runs
    due_s = CALLER_START_S + wait_s
    assert [(w.endpoint_id, w.worker_id, w.caller_id, w.wait_until) for w in waits] == [  # type: ignore[attr-defined]
        ("B-1", "w1", "A-1", story.now + timedelta(seconds=due_s)),
        ("B-2", "w2", "A-2", story.now + timedelta(seconds=due_s)),
    ]
    # later than B-1's own wait from its readiness (T0 + wait_s): it does not end first
    assert waits[0].wait_until > T0 + timedelta(seconds=wait_s)  # type: ignore[attr-defined]
    story.add(*events)
    assert story.decide() == []  # once per caller: the assignment is folded


def test_a_patterned_groups_receivers_wait_while_their_callers_may_still_go_out():
    """bench/cps.py at 64 calls/s: receiver hosts were ready 3 to 25 s in, so the callers
    went out 26.5 s in, after the first receivers had ended at their own 20 s wait, and
    their hosts took up to 46 s more. A receiver goes out with a first-call deadline
    covering the wait for its group (callers go out by then) and its caller's start."""
    groups = [
        {
            "name": "A",
            "endpoints": 2,
            "calls": "B",
            "pattern": {"kind": "rate", "cps": 1, "hold_s": 1},
        },
        {"name": "B", "endpoints": 3},  # B-3 has no caller: nothing to wait for
    ]
    story = Story(capacity=8, workers=1).queue("r1", buildup_s=4, groups=groups)
    story.step()
    events = story.decide()
    waits = [e for e in events if isinstance(e, ReceiverWaitExtended)]
    out_by = TIMING.receiver_wait_s + 4  # dispatch_callers' wait for the callee group
    until = T0 + timedelta(seconds=out_by + CALLER_START_S + 10 + 4 + NO_CALL_MARGIN_S)
    assert [(w.endpoint_id, w.worker_id, w.caller_id, w.wait_until) for w in waits] == [
        ("B-1", "w1", "A-1", until),
        ("B-2", "w1", "A-2", until),
    ]
    # later than a receiver's own wait from its readiness, and than its caller's
    # deadline were it sent out at once: the receiver does not end before it is due
    own = {e.config.call_wait_s for e in events if isinstance(e, EndpointAssigned)}
    assert own == {10 + 4 + NO_CALL_MARGIN_S}
    assert until > T0 + timedelta(seconds=CALLER_START_S + 10 + 4 + NO_CALL_MARGIN_S)
    # distinct from the one its caller's dispatch sends (JetStream keeps both)
    story.add(*events)
    story.now = T0 + timedelta(seconds=3)
    story.beat("w1").register("r1", "B-1", "B-2", "B-3")
    later = [e for e in story.decide() if isinstance(e, ReceiverWaitExtended)]
    assert [w.endpoint_id for w in later] == ["B-1", "B-2"]
    assert {w.dedup_key() for w in later}.isdisjoint({w.dedup_key() for w in waits})


def test_a_single_call_group_extends_no_wait():
    story = Story().queue("r1")
    story.step()
    story.step()
    story.register("r1", "B-1", "B-2")
    assert [summary(e)[0] for e in story.decide()] == ["EndpointAssigned"] * 2
