"""The scheduler's lifecycle rules, told as stories over a folded world. No servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callmeter_common.reconciler import World
from callmeter_events import (
    EndpointAssigned,
    EndpointConfig,
    EndpointFinished,
    EndpointRegistered,
    Event,
    RunCreated,
    RunDispatching,
    RunQueued,
    RunStarted,
    RunStopping,
    StopRequested,
    WorkerOnline,
)
from callmeter_events import TestDefinition as Definition
from callmeter_events.testdef import CALLER_START_S
from callmeter_scheduler.lifecycle import Limits, decide

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
LIMITS = Limits(
    max_endpoints_per_run=100,
    max_concurrent_runs=3,
    max_concurrent_endpoints=40,
    grace_s=60,
    receiver_wait_s=30,
    max_concurrent_runs_per_project=2,
)
PAIR = {
    "name": "pair",
    "duration_s": 10,
    "groups": [
        {"name": "A", "endpoints": 2, "calls": "B"},
        {"name": "B", "endpoints": 2},
    ],
}


class Story:
    """A world built by folding events, the way the scheduler builds it from the log."""

    def __init__(self, *worker_regions: str, capacity: int = 50) -> None:
        self.world = World()
        self.seq = 0
        for i, region in enumerate(worker_regions, 1):
            self.add(WorkerOnline(worker_id=f"w{i}", region=region, capacity=capacity))

    def add(self, *events: Event) -> Story:
        for event in events:
            self.seq += 1
            self.world.apply(self.seq, event)
        return self

    def create(self, run_id: str, at: datetime = T0, **definition: Any) -> Story:
        d = Definition.model_validate({**PAIR, **definition})
        return self.add(RunCreated(run_id=run_id, test_id="t", definition=d, occurred_at=at))

    def running(self, run_id: str, at: datetime = T0, **definition: Any) -> Story:
        self.create(run_id, at, **definition)
        plan = {e: "w1" for e in self.world.runs.endpoints[run_id]}
        return self.add(
            RunQueued(run_id=run_id, occurred_at=at),
            RunDispatching(run_id=run_id, worker_ids=["w1"], plan=plan, occurred_at=at),
            RunStarted(run_id=run_id, occurred_at=at),
            *(self.assigned(run_id, e) for e in plan),
        )

    def assigned(self, run_id: str, endpoint: str) -> EndpointAssigned:
        config = EndpointConfig(
            group=endpoint[0], role="idle", codecs=["PCMU"], duration_s=10, username=endpoint
        )
        return EndpointAssigned(run_id=run_id, endpoint_id=endpoint, worker_id="w1", config=config)

    def finish(self, run_id: str, outcomes: dict[str, str]) -> Story:
        return self.add(
            *(
                EndpointFinished(run_id=run_id, endpoint_id=e, outcome=o)
                for e, o in outcomes.items()
            )
        )

    def decide(self, now: datetime = T0) -> list[tuple[str, dict[str, Any]]]:
        return facts(decide(self.world, now, LIMITS))


def facts(events: Any) -> list[tuple[str, dict[str, Any]]]:
    """Events without their generated identity and time: what was decided."""
    skip = {"event_id", "occurred_at", "schema_version", "type"}
    return [(type(e).__name__, e.model_dump(exclude=skip)) for e in events]


# --- validation ---------------------------------------------------------------------


def test_a_valid_run_is_queued():
    story = Story("eu").create("r1")
    assert story.decide() == [("RunQueued", {"run_id": "r1"})]


def test_too_many_endpoints_for_one_run_is_rejected_with_what_to_change():
    story = Story("eu").create("r1", groups=[{"name": "A", "endpoints": 101}])
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r1",
                "reason": (
                    "101 endpoints exceed the limit of 100 per run; reduce the group sizes or raise "
                    "CALLMETER_MAX_ENDPOINTS_PER_RUN"
                ),
            },
        )
    ]


def test_concurrent_runs_are_limited_per_project_but_other_projects_still_run():
    # Project "voice" already has two runs going.
    story = Story("eu").running("r1", project="voice").running("r2", project="voice")
    # A third run of "voice" is refused; a run of another project is queued.
    story.create("r3", T0 + timedelta(seconds=1), project="voice")
    story.create("r4", T0 + timedelta(seconds=2), project="video")
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r3",
                "reason": (
                    "project 'voice' already has 2 active runs (limit 2); wait for one to finish or "
                    "raise CALLMETER_MAX_CONCURRENT_RUNS_PER_PROJECT"
                ),
            },
        ),
        ("RunQueued", {"run_id": "r4"}),
    ]


def test_concurrent_runs_are_limited_per_organisation():
    story = Story("eu").running("r1", project="p1").running("r2", project="p2")
    story.running("r3", project="p3").create("r4", project="p4")
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r4",
                "reason": (
                    "the organisation already has 3 active runs (limit 3); wait for one to finish or "
                    "raise CALLMETER_MAX_CONCURRENT_RUNS"
                ),
            },
        )
    ]


def test_runs_admitted_in_the_same_pass_count_against_the_limits():
    # Three runs of one project arrive together: the limit of 2 admits the oldest two.
    story = Story("eu")
    for i in range(3):
        story.create(f"r{i}", T0 + timedelta(seconds=i), project="voice")
    assert [f[0] for f in story.decide()] == ["RunQueued", "RunQueued", "RunRejected"]


def test_total_concurrent_endpoints_are_limited():
    story = Story("eu").running("r1", groups=[{"name": "A", "endpoints": 36}], project="p1")
    story.create("r2", project="p2")  # 4 more make 40: allowed
    story.create("r3", T0 + timedelta(seconds=1), project="p3")  # 4 more again: too many
    assert story.decide() == [
        ("RunQueued", {"run_id": "r2"}),
        (
            "RunRejected",
            {
                "run_id": "r3",
                "reason": (
                    "40 endpoints already active + 4 would exceed the limit of 40 concurrent "
                    "endpoints; wait for a run to finish or raise CALLMETER_MAX_CONCURRENT_ENDPOINTS"
                ),
            },
        ),
    ]


def test_finished_runs_free_their_share_of_the_limits():
    story = Story("eu").running("r1", project="voice").running("r2", project="voice")
    story.finish("r1", {"A-1": "SUCCESS", "A-2": "SUCCESS", "B-1": "SUCCESS", "B-2": "SUCCESS"})
    story.add(*(e for e in decide(story.world, T0, LIMITS)))  # r1 COMPLETED
    story.create("r3", T0 + timedelta(seconds=1), project="voice")
    assert story.decide() == [("RunQueued", {"run_id": "r3"})]


def test_no_worker_online_in_the_selected_region_is_rejected():
    story = Story("eu").create("r1", groups=[{"name": "A", "endpoints": 1, "region": "us"}])
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r1",
                "reason": (
                    "no worker online in region 'us' for group 'A'; start one with "
                    "`callmeter worker` --region us"
                ),
            },
        )
    ]


def test_selected_workers_must_be_online():
    story = Story("eu").create("r1", groups=[{"name": "A", "endpoints": 1, "workers": ["w7"]}])
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r1",
                "reason": (
                    "group 'A' selects workers that are not online: w7; start them or change the selection"
                ),
            },
        )
    ]


def test_groups_must_fit_the_workers_they_may_use():
    # Two eu workers of 50 slots; the eu group needs 120 (the per-run limit is lifted).
    story = Story("eu", "eu", "us").create(
        "r1",
        groups=[
            {"name": "A", "endpoints": 120, "region": "eu"},
            {"name": "B", "endpoints": 5},
        ],
    )
    limits = Limits(max_endpoints_per_run=1000, max_concurrent_endpoints=1000)
    assert facts(decide(story.world, T0, limits)) == [
        (
            "RunRejected",
            {
                "run_id": "r1",
                "reason": (
                    "120 endpoints exceed the 100 endpoint slots of the workers they may use (w1, w2); "
                    "add workers or reduce the endpoints"
                ),
            },
        )
    ]


def test_every_registering_endpoint_needs_its_own_sip_account():
    registrar = {"host": "pbx.example"}
    accounts = [{"username": "1001"}, {"username": "1002"}]
    story = Story("eu").create(
        "r1",
        groups=[
            {"name": "A", "endpoints": 3, "registrar": registrar, "accounts": accounts},
        ],
    )
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r1",
                "reason": (
                    "group 'A' has 3 endpoints but only 2 SIP accounts; add accounts or reduce the endpoints"
                ),
            },
        )
    ]


def test_a_pool_account_serves_one_active_run_at_a_time():
    pool = "pool_" + "a" * 12
    accounts = [{"username": f"10{i}"} for i in range(3)]

    def group(n: int) -> dict[str, Any]:
        return {
            "name": "A",
            "endpoints": n,
            "registrar": {"host": "pbx.example"},
            "account_pool": pool,
            "accounts": accounts,
        }

    # r1 holds two of the pool's three accounts: r2 needs two, only one is free.
    story = Story("eu").running("r1", groups=[group(2)]).create("r2", groups=[group(2)])
    assert story.decide() == [
        (
            "RunRejected",
            {
                "run_id": "r2",
                "reason": (
                    f"group 'A' has 2 endpoints but account pool {pool} has 1 free accounts; "
                    "add accounts to the pool, wait for the runs using them, or reduce the endpoints"
                ),
            },
        )
    ]
    # One endpoint fits in what is free.
    assert Story("eu").running("r1", groups=[group(2)]).create(
        "r3", groups=[group(1)]
    ).decide() == [("RunQueued", {"run_id": "r3"})]


# --- completion and failure ------------------------------------------------------------


def test_a_run_completes_when_every_endpoint_has_finished():
    story = Story("eu").running("r1")
    story.finish("r1", {"A-1": "SUCCESS", "A-2": "CALL_FAILED", "B-1": "SUCCESS"})
    assert story.decide() == []  # B-2 is still going
    story.finish("r1", {"B-2": "SUCCESS"})
    assert story.decide() == [("RunCompleted", {"run_id": "r1", "stopped": False, "reason": ""})]


def test_a_run_where_every_endpoint_failed_to_register_fails():
    story = Story("eu").running("r1")
    story.finish("r1", {e: "REGISTRATION_FAILED" for e in ("A-1", "A-2", "B-1", "B-2")})
    assert story.decide() == [
        (
            "RunFailed",
            {
                "run_id": "r1",
                "reason": (
                    "every endpoint failed to register; check the registrar address, transport and SIP "
                    "account credentials"
                ),
            },
        )
    ]


def test_callers_never_dispatched_because_receivers_failed_do_not_hide_a_registration_failure():
    story = Story("eu").create("r1")
    plan = {e: "w1" for e in ("A-1", "A-2", "B-1", "B-2")}
    story.add(
        RunQueued(run_id="r1"),
        RunDispatching(run_id="r1", worker_ids=["w1"], plan=plan),
        RunStarted(run_id="r1", occurred_at=T0),
        story.assigned("r1", "B-1"),
        story.assigned("r1", "B-2"),
    )
    # Receivers fail to register; the dispatcher fails their callers without dialling.
    story.finish("r1", {"B-1": "REGISTRATION_FAILED", "B-2": "REGISTRATION_FAILED"})
    story.finish("r1", {"A-1": "CALL_FAILED", "A-2": "CALL_FAILED"})
    assert [f[0] for f in story.decide()] == ["RunFailed"]


def test_a_run_where_no_receiver_got_a_call_fails_naming_what_the_callers_got():
    story = Story("eu").running("r1")
    story.add(
        *(
            EndpointFinished(
                run_id="r1", endpoint_id=e, outcome="REGISTRATION_FAILED", sip_code=403
            )
            for e in ("A-1", "A-2")
        )
    )
    story.finish("r1", {"B-1": "NO_INCOMING_CALL", "B-2": "NO_INCOMING_CALL"})
    assert story.decide() == [
        (
            "RunFailed",
            {
                "run_id": "r1",
                "reason": (
                    "no receiver got a call (2 ended NO_INCOMING_CALL); the callers ended: "
                    "2 REGISTRATION_FAILED 403"
                ),
            },
        )
    ]


def test_one_receiver_without_a_call_does_not_fail_the_run():
    story = Story("eu").running("r1")
    story.finish("r1", {"A-1": "SUCCESS", "A-2": "CALL_FAILED"})
    story.finish("r1", {"B-1": "SUCCESS", "B-2": "NO_INCOMING_CALL"})
    assert story.decide() == [("RunCompleted", {"run_id": "r1", "stopped": False, "reason": ""})]


def test_endpoint_hosts_that_died_are_counted_in_the_runs_reason():
    story = Story("eu").running("r1")
    dead = "endpoint host h2 was killed by SIGABRT: f: Assertion `x' failed"
    story.add(
        *(
            EndpointFinished(run_id="r1", endpoint_id=e, outcome="OSERROR", reason=dead)
            for e in ("A-1", "B-1")
        )
    )
    story.finish("r1", {"A-2": "SUCCESS", "B-2": "SUCCESS"})
    assert story.decide() == [
        (
            "RunCompleted",
            {
                "run_id": "r1",
                "stopped": False,
                "reason": (f"1 endpoint host died, ending 2 endpoints OSERROR (first: {dead})"),
            },
        )
    ]


def test_a_run_whose_every_worker_was_lost_fails():
    story = Story("eu").running("r1")
    story.finish("r1", {e: "WORKER_LOST" for e in ("A-1", "A-2", "B-1", "B-2")})
    assert story.decide() == [
        (
            "RunFailed",
            {
                "run_id": "r1",
                "reason": (
                    "every worker of the run was lost (w1); check the workers' connectivity to NATS and "
                    "their logs"
                ),
            },
        )
    ]


def test_a_run_that_lost_only_some_endpoints_completes():
    story = Story("eu").running("r1")
    story.finish("r1", {"A-1": "WORKER_LOST", "B-1": "WORKER_LOST", "A-2": "SUCCESS"})
    story.finish("r1", {"B-2": "SUCCESS"})
    assert story.decide() == [("RunCompleted", {"run_id": "r1", "stopped": False, "reason": ""})]


def test_a_run_past_its_duration_and_grace_fails():
    # duration 10 + buildup 0 + receiver wait 30 + grace 60 = 100 s.
    story = Story("eu").running("r1")
    story.finish("r1", {"A-1": "SUCCESS"})
    assert story.decide(T0 + timedelta(seconds=100)) == []
    assert story.decide(T0 + timedelta(seconds=101)) == [
        (
            "RunFailed",
            {
                "run_id": "r1",
                "reason": (
                    "run exceeded its duration (10 s) plus buildup, receiver wait and a grace period of "
                    "60 s; 3 endpoints never reported an outcome: check the workers' logs"
                ),
            },
        )
    ]


def test_a_patterned_run_has_its_callers_start_in_its_time_budget():
    """Patterned callers call only from their lead, and may take CALLER_START_S to be
    ready (their receivers wait for them that long): the run is not failed before."""
    groups = [
        {"name": "A", "endpoints": 2, "calls": "B", "pattern": {"kind": "repeat", "hold_s": 1}},
        {"name": "B", "endpoints": 2},
    ]
    story = Story("eu").running("r1", groups=groups)
    story.finish("r1", {"A-1": "SUCCESS"})
    budget_s = 100 + CALLER_START_S  # the 100 s of a single-call run, then the start
    assert story.decide(T0 + timedelta(seconds=budget_s)) == []
    assert [e for e, _ in story.decide(T0 + timedelta(seconds=budget_s + 1))] == ["RunFailed"]


# --- stop --------------------------------------------------------------------------


def test_stop_goes_through_stopping_and_completes_as_stopped_once_everything_finished():
    story = Story("eu").running("r1")
    # The user presses Stop.
    story.add(StopRequested(run_id="r1"))
    assert story.decide() == [("RunStopping", {"run_id": "r1"})]
    story.add(RunStopping(run_id="r1"))
    # Workers are still hanging up: nothing to decide yet.
    story.finish("r1", {"A-1": "SUCCESS", "A-2": "SUCCESS", "B-1": "SUCCESS"})
    assert story.decide() == []
    # The last endpoint reports its final state: COMPLETED, marked stopped.
    story.finish("r1", {"B-2": "COMPLETED_WITH_WARNINGS"})
    assert story.decide() == [("RunCompleted", {"run_id": "r1", "stopped": True, "reason": ""})]


def test_a_stop_while_queued_also_goes_through_stopping():
    story = Story("eu").create("r1").add(RunQueued(run_id="r1"), StopRequested(run_id="r1"))
    assert story.decide() == [("RunStopping", {"run_id": "r1"})]
    # The dispatcher finishes the never-started endpoints; then the run completes, stopped.
    story.add(RunStopping(run_id="r1"))
    story.finish("r1", {e: "COMPLETED_WITH_WARNINGS" for e in ("A-1", "A-2", "B-1", "B-2")})
    assert story.decide() == [("RunCompleted", {"run_id": "r1", "stopped": True, "reason": ""})]


def test_a_stopped_run_whose_endpoints_all_failed_is_still_completed_not_failed():
    story = Story("eu").running("r1").add(StopRequested(run_id="r1"), RunStopping(run_id="r1"))
    story.finish("r1", {e: "REGISTRATION_FAILED" for e in ("A-1", "A-2", "B-1", "B-2")})
    assert story.decide() == [("RunCompleted", {"run_id": "r1", "stopped": True, "reason": ""})]


def test_finished_runs_call_for_nothing():
    story = Story("eu").running("r1")
    story.finish("r1", {e: "SUCCESS" for e in ("A-1", "A-2", "B-1", "B-2")})
    verdict = list(decide(story.world, T0, LIMITS))
    assert [type(e).__name__ for e in verdict] == ["RunCompleted"]
    story.add(*verdict)
    story.add(
        StopRequested(run_id="r1"),
        EndpointRegistered(run_id="r1", endpoint_id="B-1", contact_uri="sip:b1@127.0.0.1"),
    )
    assert "r1" not in story.world.runs.runs  # finished: it left the scheduler's memory
    assert story.decide(T0 + timedelta(hours=1)) == []
