"""Probes, pure: judging an execution, settling health, scheduling, target limits, the fold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callmeter_api import probe_core as core
from callmeter_events import Health, ProbeHealthChanged, decode, encode
from callmeter_events import TestDefinition as Definition
from callmeter_projections import apply_probe

H, D, U = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY
CALL = Definition.model_validate(
    {
        "name": "probe",
        "duration_s": 5,
        "groups": [{"name": "A", "endpoints": 1, "calls": "B"}, {"name": "B", "endpoints": 1}],
    }
)
REGISTRATION = Definition.model_validate(
    {"name": "reg", "duration_s": 3, "groups": [{"name": "A", "endpoints": 1}]}
)
GOOD = {
    "mos_avg": 4.4,
    "post_dial_delay_p95_ms": 120.0,
    "call_success_rate": 100.0,
    "registration_success_rate": 100.0,
}


def judged(metrics, definition=CALL, **kw):
    degraded, unhealthy = core.default_conditions(definition)
    return core.judge(metrics, degraded, unhealthy, core.places_calls(definition), **kw)


def test_an_execution_is_healthy_degraded_or_unhealthy_by_its_conditions():
    assert judged(GOOD) == core.Judgement(H, "", 4.4, 120.0, 100.0)
    # poor quality: degraded, and the reason names the condition and the value
    poor = judged(GOOD | {"mos_avg": 3.1})
    assert (poor.health, poor.reason) == (D, "mos_avg >= 3.5 failed (3.1)")
    # the call failed: unhealthy wins over degraded, and no MOS fails as "no value"
    failed = judged(GOOD | {"call_success_rate": 0.0, "mos_avg": None})
    assert failed.health == U
    assert failed.reason == "call_success_rate >= 100 failed (0)"
    # a registration probe is judged on registration, not on a call it never makes
    reg = judged({"registration_success_rate": 100.0, "mos_avg": None}, REGISTRATION)
    assert (reg.health, reg.success_pct) == (H, 100.0)
    assert judged({"registration_success_rate": 0.0}, REGISTRATION).health == U


def test_an_execution_the_platform_could_not_measure_is_not_judged():
    assert judged(None, not_run="no worker online") == core.Judgement(None, "no worker online")
    overloaded = judged(GOOD, not_run="the load generator was overloaded")
    assert overloaded.health is None


def test_health_changes_on_the_first_judgement_then_after_confirm_in_a_row():
    assert core.settle(None, [None], 2) is None  # nothing judged yet
    assert core.settle(None, [U], 3) == U  # the first judgement sets it at once
    assert core.settle(H, [H, H], 1) is None  # no change
    assert core.settle(H, [H, U], 1) == U
    assert core.settle(H, [H, U], 2) is None  # one bad execution is not enough
    assert core.settle(H, [U, None, U], 2) == U  # not-judged ones are skipped
    assert core.settle(H, [U, D], 2) is None  # two bad ones that disagree: no change
    assert core.settle(U, [U, H, H], 2) == H


def decide_from_rows(rows: dict[int, tuple[Health | None, Health | None]], slot, health, confirm):
    """What the runner does for the execution in `slot`: read the rows strictly before
    it (storage probes.before), decide, and store (health, probe health after)."""
    earlier = [rows[s] for s in sorted(rows) if s < slot]
    stored = next((after for _, after in reversed(earlier) if after is not None), None)
    judged = [h for h, _ in earlier if h is not None]
    recent = judged[len(judged) - (confirm - 1) :] if confirm > 1 else []
    new, after = core.decide(stored, recent, health, confirm)
    rows[slot] = (health, after)
    return (stored, new) if new is not None else None


@pytest.mark.parametrize(
    ("confirm", "changes"),
    [
        (1, [(None, H), (H, D), (D, H), (H, U), (U, H)]),
        (2, [(None, H), (H, U)]),
    ],
)
def test_each_execution_decides_one_change_from_the_rows_before_it(confirm, changes):
    """Two API processes judge an execution from the stored rows before it, not their
    own folds of past events: the second, judging after the first stored the same
    execution, decides exactly the same change (one event id: one fact), and the
    changes are the transitions of the judged sequence, once each."""
    sequence = [H, H, D, H, None, U, U, H]
    first: dict[int, tuple[Health | None, Health | None]] = {}
    told = []
    for slot, health in enumerate(sequence):
        decided = decide_from_rows(first, slot, health, confirm)
        again = decide_from_rows(dict(first), slot, health, confirm)  # its own row stored
        assert again == decided
        if decided is not None:
            told.append(decided)
    assert told == changes
    # Its row keeps the probe's health after it; a not-judged execution carries it over.
    assert first[4][1] == first[3][1]
    assert core.decide(H, [], None, 1) == (None, H)
    assert core.decide(None, [], None, 1) == (None, None)


def test_a_probe_is_due_once_per_interval_and_never_while_busy():
    assert core.due(1000.0, 30, None, busy=False) == 33  # first execution at once
    assert core.due(1000.0, 30, 33, busy=False) is None  # this slot is done
    assert core.due(1020.0, 30, 33, busy=False) == 34
    assert core.due(1020.0, 30, 33, busy=True) is None  # the last one still runs
    assert core.due(1200.0, 30, 33, busy=False) == 40  # missed slots are not caught up
    # every process derives the same run id for the same execution
    assert core.execution_run_id("probe_1", 34) == core.execution_run_id("probe_1", 34)
    assert core.execution_run_id("probe_1", 34) != core.execution_run_id("probe_1", 35)
    assert len(core.execution_run_id("probe_1", 34)) == 12


def test_targets_must_be_small_and_fit_their_interval():
    core.check_target(CALL, 30, "definition")
    with pytest.raises(ValueError, match=r"^interval_s: must be at least the target's 5 s"):
        core.check_target(CALL, 8, "definition")
    big = CALL.model_copy(update={"groups": [CALL.groups[0].model_copy(update={"endpoints": 5})]})
    with pytest.raises(ValueError, match=r"^definition\.groups: a probe has at most 4"):
        core.check_target(big, 60, "definition")
    long = CALL.model_copy(update={"duration_s": 300})
    with pytest.raises(ValueError, match=r"^definition\.duration_s"):
        core.check_target(long, 600, "definition")
    with pytest.raises(ValueError, match=r"^thresholds\.degraded\.1: unknown threshold metric"):
        core.check_conditions(["mos_avg >= 3", "made_up > 1"], "thresholds.degraded")


def test_health_changes_are_one_event_per_execution_folded_into_the_probes_health():
    at = datetime(2026, 12, 1, tzinfo=UTC)
    first = ProbeHealthChanged(
        run_id="p1",
        probe_id="probe_1",
        probe_name="edge",
        project="default",
        previous=None,
        health=H,
        occurred_at=at,
    )
    assert first.subject() == "callmeter.run.p1.probe.probe_1.health"
    assert decode(encode(first)) == first
    again = first.model_copy(update={"occurred_at": datetime.now(UTC)})
    assert ProbeHealthChanged.model_validate(again.model_dump() | {"event_id": ""}).msg_id() == (
        first.msg_id()
    )
    state = apply_probe(first, None)
    assert state is not None and (state.health, state.since, state.changes) == (H, at, 1)
    assert apply_probe(first, state) == state  # the same decision twice changes nothing
    worse = first.model_copy(update={"run_id": "p2", "previous": H, "health": U, "event_id": ""})
    after = apply_probe(worse, state)
    assert after is not None and (after.health, after.run_id, after.changes) == (U, "p2", 2)


def test_a_status_page_shows_names_and_health_only():
    from callmeter_api.html_probes import public_view

    at = datetime(2026, 12, 1, tzinfo=UTC)
    probe = {
        "id": "probe_1",
        "name": "edge",
        "project": "default",
        "health": "UNHEALTHY",
        "since": at,
        "definition": {"groups": [{"registrar": {"host": "10.1.2.3"}}]},
        "unhealthy": ["call_success_rate >= 100"],
    }
    history = [
        {"run_id": "p1", "started_at": at, "judged_at": at, "health": "UNHEALTHY", "mos": None},
        {"run_id": "p0", "started_at": at, "judged_at": None, "health": None, "mos": None},
    ]
    shown = public_view(probe, history)
    assert shown == {
        "name": "edge",
        "health": "UNHEALTHY",
        "since": at,
        "recent": [{"at": at, "health": "UNHEALTHY", "mos": None}],  # running ones left out
    }


def test_the_cli_sends_what_it_was_given_and_exits_like_a_monitoring_plugin(tmp_path):
    from callmeter_cli.probes_cmd import EXIT_CODES, probe_body

    target = tmp_path / "probe.yaml"
    target.write_text("name: one call\nduration_s: 5\ngroups: [{name: A, endpoints: 1}]\n")
    body = probe_body("edge", None, 60, None, target, 2, None, ["registration_success_rate >= 50"])
    assert body == {
        "name": "edge",
        "interval_s": 60,
        "confirm": 2,
        "definition": {
            "name": "one call",
            "duration_s": 5,
            "groups": [{"name": "A", "endpoints": 1}],
        },
        "thresholds": {"unhealthy": ["registration_success_rate >= 50"]},
    }
    assert [EXIT_CODES[h] for h in ("HEALTHY", "DEGRADED", "UNHEALTHY", None)] == [0, 1, 2, 3]
