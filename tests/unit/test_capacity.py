"""Capacity search without servers: the definition, the steps, a step's verdict, the
answer, its fold, the dispatcher's delays and the CLI's exit code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from rich.console import Console

from callmeter_api.capacity import answer, calls_at, endpoint_values, judge_step, p95, step_window
from callmeter_api.capacity_chart import capacity_charts
from callmeter_cli.run_cmd import capacity_exit
from callmeter_dispatcher.dispatch import endpoint_config
from callmeter_events import EndpointAssigned, EndpointConfig, RunCreated, decode, encode
from callmeter_events import TestDefinition as Definition
from callmeter_projections import EndpointState, RunsProjection
from callmeter_projections.documents import run_state, to_doc

T0 = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


def definition(**capacity: object) -> Definition:
    return Definition.model_validate(
        {
            "name": "cap",
            "duration_s": 30,
            "capacity": {
                "endpoints_per_step": 2,
                "step_s": 5,
                "stop_when": ["call_success_rate >= 100", "mos_p5 >= 3.8"],
                **capacity,
            },
            "groups": [
                {"name": "A", "endpoints": 5, "calls": "B"},
                {"name": "B", "endpoints": 5},
                {"name": "C", "endpoints": 3, "target_uri": "sip:echo@192.0.2.1"},
            ],
        }
    )


def test_steps_are_counted_from_the_largest_calling_group_and_must_fit_the_duration():
    d = definition()
    assert d.capacity_steps() == 3  # A: 5 callers, 2 per step
    with pytest.raises(ValidationError, match="duration_s: 3 steps of 12 s need 36 s"):
        definition(step_s=12)
    with pytest.raises(ValidationError, match="settle_s: must be shorter than step_s"):
        definition(settle_s=5)
    with pytest.raises(ValidationError, match="stop_when.0: unknown threshold"):
        definition(stop_when=["speed >= 1"])
    # PESQ scores exist only once a call has ended: never a step's condition
    with pytest.raises(ValidationError, match="stop_when.0: mos_lqo_avg is scored after"):
        definition(stop_when=["mos_lqo_avg >= 3.5"])
    with pytest.raises(ValidationError, match="thresholds.0: mos_lqo_min is scored after"):
        Definition.model_validate(
            {**definition().model_dump(), "thresholds": ["mos_lqo_min >= 3"]}
            | {"capacity": {"endpoints_per_step": 2, "step_s": 5}}
        )


def test_calls_at_adds_every_calling_groups_joined_callers():
    d = definition()
    # step 0: and C-1, C-2; step 1, C-3; step 2: A-5
    assert calls_at(d, 0) == 4 and calls_at(d, 1) == 7 and calls_at(d, 2) == 8


def test_the_dispatcher_delays_each_caller_to_its_step_and_ends_every_call_together():
    d = definition()
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r", test_id="t", definition=d, occurred_at=T0))
    run, eps = p.runs["r"], p.endpoints["r"]
    a3 = endpoint_config(run, eps["A-3"], "sip:b-3@x")
    b3 = endpoint_config(run, eps["B-3"], None)
    assert (a3.start_delay_s, a3.duration_s) == (5.0, 25.0)
    assert (b3.start_delay_s, b3.duration_s) == (0.0, 25.0)  # ready at once, ends with A-3
    assert endpoint_config(run, eps["A-5"], None).start_delay_s == 10.0


def ep(eid: str, role: str = "caller", **kw: object) -> EndpointState:
    return EndpointState("r", eid, eid.split("-")[0], role, **kw)  # type: ignore[arg-type]


def test_a_steps_endpoint_values_count_only_the_endpoints_that_joined_by_then():
    d = definition()
    eps = [
        ep("A-1", call_setup_ms=100.0, post_dial_delay_ms=50.0, contact_uri="sip:a1"),
        ep("A-2", call_setup_ms=300.0, post_dial_delay_ms=70.0, contact_uri="sip:a2"),
        ep("A-3", outcome="CALL_FAILED", sip_code=503, contact_uri="sip:a3"),
        ep("A-5"),  # step 2: not in the load yet
        ep("B-1", "receiver", contact_uri="sip:b1"),
    ]
    step0 = endpoint_values(d, eps, 0)
    assert step0["call_success_rate"] == 100.0
    assert step0["call_setup_p95_ms"] == pytest.approx(290.0)
    step1 = endpoint_values(d, eps, 1)
    assert step1["call_success_rate"] == pytest.approx(200 / 3)
    assert step1["registration_success_rate"] == 100.0
    assert p95([]) is None and p95([4.0]) == 4.0


def test_a_step_fails_on_its_conditions_or_on_an_overloaded_generator():
    d = definition()
    w = step_window(d, T0, 1)
    assert (w.calls, w.judged_from, w.end) == (
        7,
        T0 + timedelta(seconds=7),
        T0 + timedelta(seconds=10),
    )
    good = {"call_success_rate": 100.0, "mos_p5": 4.1}
    assert judge_step(d, "r", w, good, None).passed
    bad = judge_step(d, "r", w, {**good, "mos_p5": 3.5}, None)
    assert not bad.passed and [r.passed for r in bad.results] == [True, False]
    hot = judge_step(d, "r", w, good, T0 + timedelta(seconds=9))
    assert not hot.passed and "overloaded" in hot.reason
    later = judge_step(d, "r", w, good, T0 + timedelta(seconds=11))
    assert later.passed  # an overload after the step's end is the next step's problem


def judged(d: Definition, step: int, ok: bool) -> object:
    values = {"call_success_rate": 100.0 if ok else 50.0, "mos_p5": 4.2}
    return judge_step(d, "r", step_window(d, T0, step), values, None)


def test_the_answer_is_the_last_step_passed_before_the_first_failure():
    d = definition(target_calls=8)
    got = answer(d, [judged(d, 1, False), judged(d, 0, True)])  # type: ignore[list-item]
    assert got["calls"] == 4 and got["step"] == 0 and got["finished"]
    assert got["text"] == (
        "sustains 4 concurrent calls with call_success_rate >= 100, mos_p5 >= 3.8;"
        " 7 failed: call_success_rate >= 100 (actual 50)"
    )
    assert got["target_met"] is False
    nothing = answer(d, [judged(d, 0, False)])  # type: ignore[list-item]
    assert nothing["calls"] is None and nothing["text"].startswith("not even 4 concurrent calls")
    every = answer(d, [judged(d, k, True) for k in range(3)])  # type: ignore[misc]
    assert every["calls"] == 8 and every["target_met"] is True
    assert every["text"].endswith("(every step passed: the most it was asked for)")
    assert answer(d, [])["text"] == "no step judged yet"
    charts = capacity_charts(every, d.stop_conditions())
    assert len(charts) == 2 and "Concurrent calls per step" in charts[0]


def test_the_run_folds_its_callers_start_and_steps_once_each():
    d = definition()
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r", test_id="t", definition=d, occurred_at=T0))
    run, eps = p.runs["r"], p.endpoints["r"]
    receiver = EndpointAssigned(
        run_id="r", endpoint_id="B-1", worker_id="w", config=endpoint_config(run, eps["B-1"], None)
    )
    p.apply(2, receiver)
    assert p.runs["r"].callers_assigned_at is None  # receivers are not the search's clock
    cfg: EndpointConfig = endpoint_config(run, eps["A-1"], "sip:b-1@x")
    caller = EndpointAssigned(
        run_id="r",
        endpoint_id="A-1",
        worker_id="w",
        config=cfg,
        occurred_at=T0 + timedelta(seconds=3),
    )
    p.apply(3, caller)
    for seq, event in enumerate([judged(d, 0, True), judged(d, 0, False), judged(d, 1, True)], 4):
        p.apply(seq, decode(encode(event)))  # type: ignore[arg-type]
    run = p.runs["r"]
    assert run.callers_assigned_at == T0 + timedelta(seconds=3)
    assert [(s.step, s.passed) for s in run.capacity_steps] == [(0, True), (1, True)]
    assert run_state(to_doc(run)) == run


def test_the_cli_exits_non_zero_when_the_target_is_not_met():
    d = definition(target_calls=8)
    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    short = answer(d, [judged(d, 0, True), judged(d, 1, False)])  # type: ignore[list-item]
    full = answer(d, [judged(d, k, True) for k in range(3)])  # type: ignore[misc]
    assert capacity_exit(short, console) == 1 and capacity_exit(full, console) == 0
    untargeted = answer(definition(), [judged(d, 0, False)])  # type: ignore[list-item]
    assert capacity_exit(untargeted, console) == 1  # no step passed at all


def test_the_form_edits_a_capacity_search_and_clearing_its_inputs_removes_it():
    from callmeter_api import forms
    from tests.unit.test_ui_forms import FIELDS

    search = {"endpoints_per_step": 1, "step_s": 10, "stop_when": ["mos_p5 >= 3.8"]}
    stored = {"name": "office", "duration_s": 30, "capacity": search, "groups": []}
    form = forms.form_from_definition(stored)
    assert (form["capacity.step_s"], form["capacity.stop_when"]) == ("10", "mos_p5 >= 3.8")
    edited = forms.form_from_fields(
        {**FIELDS, **{k: v for k, v in form.items() if k.startswith("capacity.")}}
    )
    definition, errors = forms.validate(edited, stored)
    assert errors == {} and definition is not None and definition.capacity is not None
    assert definition.capacity.stop_when == ["mos_p5 >= 3.8"]
    cleared, _ = forms.validate(forms.form_from_fields(FIELDS), stored)
    assert cleared is not None and cleared.capacity is None


def test_a_run_stopped_by_its_search_says_so():
    from callmeter_events import RunStopping

    d = definition()
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r", test_id="t", definition=d, occurred_at=T0))
    p.apply(2, judged(d, 0, True))  # type: ignore[arg-type]
    p.apply(3, judged(d, 1, False))  # type: ignore[arg-type]
    p.apply(4, RunStopping(run_id="r"))
    assert p.runs["r"].reason == (
        "stop requested by its capacity search (step 2, 7 calls, failed); hanging up active calls"
    )


def cps_definition(**capacity: object) -> Definition:
    """A search in calls per second: A's rate (most 5/s) and C's (most 2/s) step by 2/s."""
    rate = {"kind": "rate", "hold_s": 1}
    return Definition.model_validate(
        {
            "name": "cps",
            "duration_s": 20,
            "capacity": {"cps_per_step": 2, "step_s": 5, "stop_when": ["call_success_rate >= 99"]}
            | capacity,
            "groups": [
                {"name": "A", "endpoints": 8, "calls": "B", "pattern": rate | {"cps": 5}},
                {"name": "B", "endpoints": 8},
                {"name": "C", "endpoints": 4, "target_uri": "sip:x@192.0.2.1", "pattern": rate}
                | {"pattern": rate | {"cps": 2}},
            ],
        }
    )


def test_a_search_in_calls_per_second_steps_each_rate_up_to_its_cps():
    from callmeter_api.capacity import cps_at

    d = cps_definition()
    assert d.capacity_steps() == 3  # 2, 4, then A's most (5)
    a, _, c = d.groups
    assert [(s.at_s, s.cps) for s in d.stepped_pattern(a).steps] == [  # type: ignore[union-attr]
        (0.0, 2.0),
        (5.0, 4.0),
        (10.0, 5.0),
    ]
    assert [s.cps for s in d.stepped_pattern(c).steps] == [2.0, 2.0, 2.0]  # type: ignore[union-attr]
    assert [cps_at(d, k) for k in range(3)] == [4.0, 6.0, 7.0]
    # Every caller is there from the start, calling the stepped rate; receivers know it.
    p = RunsProjection()
    p.apply(1, RunCreated(run_id="r", test_id="t", definition=d, occurred_at=T0))
    run, eps = p.runs["r"], p.endpoints["r"]
    caller = endpoint_config(run, eps["A-8"], "sip:b-8@x", T0)
    receiver = endpoint_config(run, eps["B-1"], None)
    assert (caller.start_delay_s, caller.duration_s) == (0.0, 20.0)
    assert caller.pattern == receiver.pattern == d.stepped_pattern(a)
    # The step's seconds count from the instant the rate starts: the callers' lead, 1.5 s
    # plus 0.8 s for each of the 3 hosts of their 12 endpoints (the dispatcher's too).
    assert d.pattern_lead_s() == pytest.approx(3.9)
    assert caller.calls_from == T0 + timedelta(seconds=d.pattern_lead_s())
    w = step_window(d, T0, 1)
    assert (w.cps, w.start, w.end) == (
        6.0,
        T0 + timedelta(seconds=3.9 + 5),
        T0 + timedelta(seconds=3.9 + 10),
    )


def test_a_calls_per_second_search_is_checked_and_answers_in_calls_per_second():
    with pytest.raises(ValidationError, match="endpoints_per_step: give either"):
        cps_definition(endpoints_per_step=1)
    with pytest.raises(ValidationError, match="target_calls: a search in calls per second"):
        cps_definition(target_calls=3)
    with pytest.raises(ValidationError, match="groups.0.pattern: a capacity search in calls"):
        Definition.model_validate(
            cps_definition().model_dump()
            | {
                "groups": [
                    {"name": "A", "endpoints": 2, "calls": "B"},
                    {"name": "B", "endpoints": 2},
                ]
            }
        )
    d = cps_definition(target_cps=6)

    def step(k: int, success: float) -> object:
        return judge_step(d, "r", step_window(d, T0, k), {"call_success_rate": success}, None)

    got = answer(d, [step(0, 100.0), step(1, 100.0), step(2, 80.0)])  # type: ignore[list-item]
    assert got["text"] == (
        "sustains 6 calls/s with call_success_rate >= 99;"
        " 7 calls/s failed: call_success_rate >= 99 (actual 80)"
    )
    assert (got["cps"], got["target_met"]) == (6.0, True)
    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    assert capacity_exit(got, console) == 0
    short = answer(d, [step(0, 100.0), step(1, 50.0)])  # type: ignore[list-item]
    assert (short["cps"], short["target_met"]) == (4.0, False)
    assert capacity_exit(short, console) == 1
    charts = capacity_charts(got, d.stop_conditions())
    assert "Calls per second per step" in charts[0] and "step 3: 7 calls/s" in charts[0]


def test_a_steps_calls_are_judged_from_their_records():
    from callmeter_api.capacity import record_values

    calls = [("SUCCESS", 20.0, 30.0), ("SUCCESS", 40.0, 50.0), ("CALL_FAILED", 10.0, None)]
    values = record_values(calls)
    assert values["call_success_rate"] == pytest.approx(200 / 3)
    assert values["post_dial_delay_p95_ms"] == pytest.approx(38.0)
    assert values["call_setup_p95_ms"] == pytest.approx(49.0)
    assert record_values([])["call_success_rate"] is None
