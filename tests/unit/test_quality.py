"""A run's quality per direction, its headline and threshold values: the pure core of
callmeter_storage.stats, which the API, the pages, the evaluator and JUnit all read."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from callmeter_cli.junit import junit_xml
from callmeter_events.thresholds import QUALITY_METRICS, SPEECH_METRICS, evaluate, parse, verdict
from callmeter_storage import quality
from callmeter_storage.rollup import bin_of

DEFINITION = {
    "groups": [
        {"name": "A", "calls": "B"},
        {"name": "B"},
        {"name": "ext", "target_uri": "sip:echo@example.net"},
        {"name": "idle"},
    ]
}


def test_a_groups_received_streams_are_one_direction_of_the_run() -> None:
    assert quality.receive_direction(DEFINITION, "A") == "recv"  # callers receive
    assert quality.receive_direction(DEFINITION, "B") == "send"  # what callers send
    assert quality.receive_direction(DEFINITION, "ext") == "recv"
    assert quality.receive_direction(DEFINITION, "idle") is None
    assert quality.receive_direction(DEFINITION, "nope") is None
    assert quality.receive_direction(None, "A") is None


def group_rows(group: str, loss: float, mos: float, jitter: float, seconds: int = 20) -> tuple:
    """Rollup rows of a group whose 4 endpoints each received 50 packets a second."""
    samples = 4 * seconds
    lost = round(50 * samples * loss / (1 - loss))
    rows = [
        (group, "samples", samples, float(samples), 1.0, 1.0),
        (group, "packets", samples, 50.0 * samples, 50.0, 50.0),
        (group, "packets_lost", samples, float(lost), 0.0, float(lost)),
        (group, "mos", samples, mos * samples, mos, mos),
        (group, "jitter_ms", samples, jitter * samples, jitter, jitter),
        (group, "fraction_lost", samples, loss * samples, loss, loss),
    ]
    hist = [
        (group, m, bin_of(m, v), samples)
        for m, v in (("mos", mos), ("jitter_ms", jitter), ("fraction_lost", loss))
    ]
    return rows, hist


def directions_of(*groups: tuple) -> dict:
    rows = [r for g in groups for r in g[0]]
    hist = [h for g in groups for h in g[1]]
    key_of = {g: quality.receive_direction(DEFINITION, g) for g in ("A", "B")}
    combined = quality.combine(quality.accumulate(rows, hist), key_of)
    return {k: quality.figures(v) for k, v in combined.items()}


def test_the_headline_is_the_worse_direction_never_the_average() -> None:
    # A sends to B with 5 % loss; what B sends back arrives clean.
    directions = directions_of(group_rows("B", 0.05, 4.0, 1.2), group_rows("A", 0.0, 4.4, 0.3))
    assert directions["send"]["loss"]["fraction"] == pytest.approx(0.05, abs=2e-4)
    assert directions["recv"]["loss"]["fraction"] == 0.0
    worst = quality.headline(directions)
    assert worst["loss"]["fraction"] == pytest.approx(0.05, abs=2e-4)  # not 0.025
    assert worst["mos"]["avg"] == 4.0 and worst["mos"]["p5"] == 4.0
    assert worst["jitter_ms"]["avg"] == 1.2 and worst["jitter_ms"]["p95"] == 1.2
    # Counts are added up over both directions.
    assert worst["samples"]["n"] == 160 and worst["packets"]["sum"] == 8000
    summary = quality.summary(worst)
    assert summary["fraction_lost"] == pytest.approx(0.05, abs=2e-4) and summary["mos"] == 4.0
    assert summary["packets_received"] == 8000


def test_each_headline_figure_is_the_worse_of_the_directions_figures() -> None:
    # send has the lower average MOS, recv the lower minimum: each figure is its own worst.
    send = {"mos": {"n": 3, "avg": 3.9, "min": 3.8, "p5": 3.8}, "loss": {"fraction": 0.01}}
    recv = {"mos": {"n": 5, "avg": 4.2, "min": 2.0, "p5": 2.5}, "loss": {"fraction": None}}
    worst = quality.headline({"send": send, "recv": recv})
    assert worst["mos"] == {"n": 8, "avg": 3.9, "min": 2.0, "p5": 2.5}
    assert worst["loss"]["fraction"] == 0.01
    assert quality.headline({})["loss"]["fraction"] is None


def test_threshold_values_name_the_worse_direction_and_each_direction() -> None:
    directions = directions_of(group_rows("B", 0.05, 4.0, 1.2), group_rows("A", 0.0, 4.4, 0.3))
    values = quality.threshold_values(quality.headline(directions), directions)
    assert values["loss_avg_pct"] == pytest.approx(5.0, abs=0.02)
    assert values["loss_avg_pct_send"] == pytest.approx(5.0, abs=0.02)
    assert values["loss_avg_pct_recv"] == 0.0
    assert values["mos_avg"] == values["mos_avg_send"] == 4.0 and values["mos_avg_recv"] == 4.4
    assert values["rtt_avg_ms"] is None  # no RTT in these samples: null, never a guess
    assert "mos_lqo_avg" not in values  # no speech figures asked for
    # Every name the evaluator produces is a name a threshold may use, and the reverse.
    speech = quality.speech_figures([])
    for name in quality.threshold_values(quality.headline(directions), directions, speech):
        parse(f"{name} >= 0")
    assert set(quality.THRESHOLD_FIGURES) == set(QUALITY_METRICS)
    assert set(quality.SPEECH_THRESHOLD_FIGURES) == set(SPEECH_METRICS)


def test_mos_lqo_is_null_when_no_call_was_scored_and_such_a_threshold_is_not_measured() -> None:
    # a sampled call that failed to score (None) is left out, never counted as 0
    scored = quality.speech_figures([4.1, None, 3.5])
    assert scored == {"scored": 2, "avg": pytest.approx(3.8), "min": 3.5, "max": 4.1}
    assert quality.speech_figures([None]) == {"scored": 0, "avg": None, "min": None, "max": None}
    values = quality.threshold_values({}, {}, scored)
    assert values["mos_lqo_avg"] == pytest.approx(3.8) and values["mos_lqo_min"] == 3.5
    none = quality.threshold_values({}, {}, quality.speech_figures([]))
    assert none["mos_lqo_avg"] is None and none["mos_lqo_min"] is None
    gates = [parse("mos_lqo_avg >= 3.5"), parse("mos_lqo_min >= 3.6")]
    judged = evaluate(gates, values)
    assert [(r.passed, verdict(r.actual, r.passed)) for r in judged] == [
        (True, "pass"),
        (False, "FAIL"),
    ]
    [unmeasured] = evaluate(gates[:1], none)
    assert unmeasured.passed is False and verdict(None, False) == "not measured"


def test_junit_reports_an_unmeasured_threshold_and_the_runs_mos_lqo() -> None:
    run = {
        "id": "r1",
        "name": "t",
        "summary": {"mos": 4.3, "mos_lqo": 4.05, "mos_lqo_min": 3.9, "mos_lqo_scored": 3},
        "evaluation": {
            "results": [
                {"expression": "mos_lqo_avg >= 4", "actual": 4.05, "passed": True},
                {"expression": "mos_lqo_min >= 4", "actual": 3.9, "passed": False},
                {"expression": "rtt_avg_ms <= 150", "actual": None, "passed": False},
            ]
        },
        "endpoints": [],
    }
    root = ET.fromstring(junit_xml(run))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["mos_lqo"], props["mos_lqo_min"], props["mos_lqo_scored"]) == ("4.05", "3.9", "3")
    failures = {
        c.get("name"): [f.get("message") for f in c.iter("failure")] for c in root.iter("testcase")
    }
    assert failures == {
        "mos_lqo_avg >= 4": [],
        "mos_lqo_min >= 4": ["actual 3.9"],
        "rtt_avg_ms <= 150": ["not measured"],
    }
    assert root.get("tests") == "3" and root.get("failures") == "2"
    # no call scored: empty properties, not 0
    root = ET.fromstring(junit_xml({**run, "summary": {"mos_lqo": None}, "evaluation": None}))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["mos_lqo"] == "" and props["mos_lqo_scored"] == ""


def test_junit_reports_quality_per_direction_as_suite_properties() -> None:
    run = {
        "id": "r1",
        "name": "t",
        "summary": {
            "mos": 4.0,
            "loss_pct": 5.0,
            "send": {"mos": 4.0, "loss_pct": 5.0},
            "recv": {"mos": 4.4, "loss_pct": 0.0},
        },
        "evaluation": {
            "results": [{"expression": "loss_avg_pct_recv <= 1", "actual": 0.0, "passed": True}]
        },
        "endpoints": [],
    }
    root = ET.fromstring(junit_xml(run))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["loss_pct"], props["loss_pct.send"], props["loss_pct.recv"]) == ("5", "5", "0")
    assert props["mos.recv"] == "4.4" and props["jitter_ms.send"] == ""
    assert [c.get("name") for c in root.iter("testcase")] == ["loss_avg_pct_recv <= 1"]
    assert root.get("tests") == "1" and root.get("failures") == "0"


def test_series_points_keep_each_direction_apart_and_all_together() -> None:
    rows = [  # (t, group, metric, n, sum, min, max)
        (0, "A", "mos", 4, 17.6, 4.4, 4.4),
        (0, "B", "mos", 4, 16.0, 4.0, 4.0),
        (1, "B", "mos", 4, 16.0, 3.9, 4.1),
        (1, "idle", "mos", 1, 1.0, 1.0, 1.0),
    ]
    points = quality.series(rows, {"A": "recv", "B": "send", "idle": None})
    assert [p["t"] for p in points] == [0, 1]
    first, second = points
    assert first["recv"]["mos"]["avg"] == pytest.approx(4.4)
    assert first["send"]["mos"]["avg"] == pytest.approx(4.0)
    assert first["all"]["mos"] == {"n": 8, "avg": pytest.approx(4.2), "min": 4.0, "max": 4.4}
    assert "recv" not in second and second["all"]["mos"]["min"] == 1.0


def test_the_cli_summary_shows_the_worse_direction_and_each_direction() -> None:
    from rich.console import Console

    from callmeter_cli.run_cmd import summary_table

    run = {
        "id": "r1",
        "status": "COMPLETED",
        "call_success_rate": 100.0,
        "outcome_counts": {},
        "summary": {
            "mos": 3.9,
            "loss_pct": 5.0,
            "send": {"mos": 3.9, "loss_pct": 5.0},
            "recv": {"mos": 4.4, "loss_pct": 0.0},
        },
    }
    console = Console(record=True, width=100)
    console.print(summary_table(run))
    cells = {
        row[0]: row[1:]
        for line in console.export_text().splitlines()
        if (row := [c.strip() for c in line.strip("│ ").split("│")])[0] in ("loss %", "MOS (avg)")
    }
    assert cells == {"MOS (avg)": ["3.90", "3.90", "4.40"], "loss %": ["5.00", "5.00", "0.00"]}


def test_success_rates_have_one_definition_in_percent() -> None:
    from callmeter_storage.quality import success_rates

    endpoints = [
        ("caller", "CLOSED", "SUCCESS", 1),
        ("caller", "CLOSED", "COMPLETED_WITH_WARNINGS", 1),
        ("caller", "CLOSED", "CALL_FAILED", 1),
        ("caller", "CLOSED", "REGISTRATION_FAILED", 1),
        ("caller", "INCALL", None, 1),  # not finished: not counted for calls yet
        ("receiver", "CLOSED", "NO_INCOMING_CALL", 1),  # a receiver's call is its caller's
        ("idle", "INITIALIZING", None, 1),  # has not tried to register yet
    ]
    assert success_rates(endpoints) == {
        "endpoints_finished": 5,
        "callers_finished": 4,
        "call_success_rate": 50.0,
        "registration_attempts": 6,
        "registration_success_rate": 100.0 * 5 / 6,
    }
    empty = success_rates([])
    assert empty["call_success_rate"] is None and empty["registration_success_rate"] is None
