"""Platform outages: merged as services report them, counted by deadlines, named in
reasons, and never mistaken for a worker's silence. No servers."""

from __future__ import annotations

from datetime import timedelta

from callmeter_events import PlatformOutage, decode, encode
from callmeter_projections import Outage, covered_s
from callmeter_projections.outages import merge
from tests.unit.test_dispatch import T0 as D0
from tests.unit.test_dispatch import Story as DispatchStory
from tests.unit.test_lifecycle import T0, Story


def at(s: float):  # type: ignore[no-untyped-def]
    return T0 + timedelta(seconds=s)


def outage(start: float, end: float, component: str = "nats", by: str = "scheduler") -> Outage:
    return Outage(component, at(start), at(end), (by,))


def report(start: float, end: float, component: str = "nats", by: str = "scheduler"):  # type: ignore[no-untyped-def]
    return PlatformOutage(component=component, reporter=by, started_at=at(start), ended_at=at(end))


def test_reports_of_one_outage_by_several_services_merge_into_one() -> None:
    merged = merge([outage(10, 30, by="worker")], outage(12, 40, by="scheduler"))
    assert merged == (Outage("nats", at(10), at(40), ("scheduler", "worker")),)
    # Another component, or a later outage of the same one, stays apart.
    more = merge(merge(merged, outage(20, 25, "postgres")), outage(50, 55))
    assert [(o.component, o.started_at) for o in more] == [
        ("nats", at(10)),
        ("postgres", at(20)),
        ("nats", at(50)),
    ]


def test_covered_time_counts_overlaps_once_and_only_inside_the_span() -> None:
    outages = [outage(10, 30), outage(20, 40, "postgres"), outage(100, 200)]
    assert covered_s(outages, at(0), at(60)) == 30.0  # 10..40
    assert covered_s(outages, at(35), at(150)) == 55.0  # 35..40 and 100..150
    assert covered_s(outages, at(41), at(99)) == 0.0


def test_the_event_round_trips_and_its_id_names_the_fact() -> None:
    event = report(10, 30)
    assert decode(encode(event)) == event
    assert event.subject() == "callmeter.run.platform.outage.nats"
    assert report(10, 35).msg_id() == event.msg_id()  # same outage seen ending later: same fact
    assert report(10, 30, by="api").msg_id() != event.msg_id()


def test_a_run_deadline_counts_the_outage_and_its_reason_names_it() -> None:
    # duration 10 + receiver wait 30 + grace 60 = 100 s; NATS was down 40 s of it.
    story = Story("eu").running("r1")
    story.finish("r1", {"A-1": "SUCCESS"})
    story.add(report(20, 60), report(25, 58, by="dispatcher"))
    assert story.world.runs.runs["r1"].outages == (
        Outage("nats", at(20), at(60), ("dispatcher", "scheduler")),
    )
    assert story.decide(at(140)) == []
    assert story.decide(at(141)) == [
        (
            "RunFailed",
            {
                "run_id": "r1",
                "reason": (
                    "platform outage: NATS unreachable from 09:00:20 to 09:01:00; run exceeded its duration"
                    " (10 s) plus buildup, receiver wait and a grace period of 60 s plus the 40 s of outage;"
                    " 3 endpoints never reported an outcome after it"
                ),
            },
        )
    ]


def test_an_outage_before_a_run_is_not_its_outage() -> None:
    story = Story("eu")
    story.add(report(-100, -50))
    story.running("r1")
    assert story.world.runs.runs["r1"].outages == ()
    assert story.world.runs.outages == (outage(-100, -50),)


def test_heartbeats_held_back_by_an_outage_are_not_a_lost_worker() -> None:
    story = DispatchStory().queue("r1")
    story.step(), story.step()
    # NATS down from 1 s to 9 s: no heartbeat of either worker got through.
    story.add(
        PlatformOutage(
            component="nats",
            reporter="dispatcher",
            started_at=D0 + timedelta(seconds=1),
            ended_at=D0 + timedelta(seconds=9),
        )
    )
    story.now = D0 + timedelta(seconds=10)
    assert [e for e in story.step() if e[0] == "WorkerLost"] == []
    # Silence after the outage still counts: 3.5 s past its end, w2 is lost.
    story.beat("w1")
    story.now = D0 + timedelta(seconds=12.6)
    story.beat("w1")
    assert ("WorkerLost", "w2") in story.step()


def test_endpoints_finished_during_an_outage_are_kept_as_they_are() -> None:
    story = Story("eu").running("r1")
    story.add(report(5, 8))
    story.finish("r1", {"A-1": "SUCCESS", "A-2": "SUCCESS", "B-1": "SUCCESS", "B-2": "SUCCESS"})
    assert story.decide(at(20)) == [
        ("RunCompleted", {"run_id": "r1", "stopped": False, "reason": ""})
    ]
