"""A log of finished, rejected and in-flight runs, told with the real event types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callmeter_events import (
    CallEnded,
    CallEstablished,
    CallFailed,
    EndpointAssigned,
    EndpointConfig,
    EndpointFinished,
    EndpointRegistered,
    Event,
    RunCompleted,
    RunCreated,
    RunDispatching,
    RunEvaluated,
    RunQueued,
    RunRejected,
    RunStarted,
    StopRequested,
    ThresholdOutcome,
)
from callmeter_events import TestDefinition as Definition

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
PAIR = Definition.model_validate(
    {
        "name": "pair",
        "duration_s": 5,
        "thresholds": ["mos_avg > 3.5"],
        "groups": [{"name": "A", "endpoints": 2, "calls": "B"}, {"name": "B", "endpoints": 2}],
    }
)


def run_story(run_id: str, minute: int, finish: bool = True) -> list[Event]:
    at = T0 + timedelta(minutes=minute)
    plan = {"A-1": "w1", "A-2": "w2", "B-1": "w1", "B-2": "w2"}
    config = EndpointConfig(group="A", role="caller", codecs=["PCMU"], duration_s=5, username="a")
    events: list[Event] = [
        RunCreated(run_id=run_id, test_id="t", definition=PAIR, occurred_at=at),
        RunQueued(run_id=run_id, occurred_at=at),
        RunDispatching(run_id=run_id, worker_ids=["w1", "w2"], plan=plan, occurred_at=at),
        RunStarted(run_id=run_id, occurred_at=at + timedelta(seconds=1)),
    ]
    for ep in plan:
        base = {"run_id": run_id, "endpoint_id": ep, "occurred_at": at + timedelta(seconds=2)}
        events += [
            EndpointAssigned(**base, worker_id=plan[ep], config=config),
            EndpointRegistered(**base, contact_uri=f"sip:{ep}@h", time_to_register_ms=2.5),
        ]
        if ep == "A-2":
            events.append(CallFailed(**base, sip_code=486, reason="Busy Here"))
        else:
            events += [
                CallEstablished(
                    **base,
                    codec="PCMU",
                    time_to_trying_ms=1.0,
                    time_to_ringing_ms=2.0,
                    post_dial_delay_ms=2.0,
                    call_setup_ms=3.0,
                ),
                CallEnded(**base, sip_code=200, reason="bye", duration_s=5.0),
            ]
        if finish:
            outcome = "CALL_FAILED" if ep == "A-2" else "SUCCESS"
            events.append(EndpointFinished(**base, outcome=outcome))
    if finish:
        events += [
            StopRequested(run_id=run_id, occurred_at=at + timedelta(seconds=3)),
            RunCompleted(run_id=run_id, occurred_at=at + timedelta(seconds=9)),
            RunEvaluated(
                run_id=run_id,
                passed=False,
                metrics={"mos_avg": 3.1, "loss_avg_pct": None},
                results=[ThresholdOutcome(expression="mos_avg > 3.5", actual=3.1, passed=False)],
            ),
        ]
    return events


def history() -> list[Event]:
    """Three finished runs, one rejected, two in flight, interleaved like a real log."""
    log = run_story("r1", 1) + run_story("r2", 2)
    log += [
        RunCreated(run_id="r3", test_id="t", definition=PAIR, occurred_at=T0),
        RunRejected(run_id="r3", reason="no worker online", occurred_at=T0),
    ]
    live, done = run_story("r4", 4, finish=False), run_story("r5", 5)
    log += [e for pair in zip(live, done, strict=False) for e in pair]
    log += live[len(done) :] + done[len(live) :]
    return log + run_story("r6", 6, finish=False)
