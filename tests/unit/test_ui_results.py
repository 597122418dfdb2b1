"""Results of a finished run, shaped from aggregates (no servers), and the OpenAPI
document's Bearer scheme."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta

from callmeter_api.app import create_app
from callmeter_api.pages import env
from callmeter_api.results_view import (
    mos_histogram_svg,
    outcome_rows,
    percentile_rows,
    series_charts,
    sip_code_rows,
    speech_view,
)
from callmeter_api.settings import ApiSettings
from callmeter_api.svg import bar_chart

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_percentiles_are_in_display_units_and_graded_by_the_user_thresholds():
    metrics = {
        "mos": {"n": 10, "avg": 4.1, "p50": 4.2, "p95": 4.4, "p99": 4.4, "min": 2.9, "max": 4.4},
        "fraction_lost": {"n": 10, "avg": 0.005, "p50": 0.0, "p95": 0.05, "p99": 0.08},
    }
    rows = {r["key"]: r for r in percentile_rows(metrics)}
    assert list(rows) == ["mos", "jitter_ms", "fraction_lost", "rtt_ms"]
    assert rows["mos"]["grades"] == {
        "avg": "good",
        "p50": "good",
        "p95": "good",
        "p99": "good",
        "min": "bad",
        "max": "good",
    }
    loss = rows["fraction_lost"]
    assert loss["unit"] == "%" and loss["values"]["p95"] == 5.0  # a fraction, shown in percent
    assert (loss["grades"]["avg"], loss["grades"]["p95"]) == ("good", "bad")  # <1 good, >3 bad
    assert rows["rtt_ms"]["values"]["p50"] is None and rows["rtt_ms"]["grades"]["p50"] == ""
    # Each direction gets its rows under the headline (the worse direction's figures).
    sides = percentile_rows(
        {"fraction_lost": {"n": 4, "avg": 0.05}},
        {
            "send": {"fraction_lost": {"n": 2, "avg": 0.05}},
            "recv": {"fraction_lost": {"n": 2, "avg": 0.0}},
        },
    )
    loss_rows = [(r["side"], r["values"]["avg"]) for r in sides if r["key"] == "fraction_lost"]
    assert loss_rows == [("worst", 5.0), ("send", 5.0), ("recv", 0.0)]


def test_outcomes_and_sip_codes_cover_every_endpoint():
    rows = outcome_rows({"SUCCESS": 6, "CALL_FAILED": 2}, 10)
    assert [(r["outcome"], r["count"], r["pct"], r["cls"]) for r in rows] == [
        ("SUCCESS", 6, 60.0, "st-good"),
        ("CALL_FAILED", 2, 20.0, "st-bad"),
        ("NOT_FINISHED", 2, 20.0, "st-warn"),
    ]
    codes = sip_code_rows(Counter([200, 200, 486, None, 503, 200, 180]))
    assert [(c["code"], c["reason"], c["count"]) for c in codes] == [
        (180, "", 1),
        (200, "OK", 3),
        (486, "Busy Here", 1),
        (503, "Service Unavailable", 1),
        (None, "no final response", 1),
    ]
    assert [c["cls"] for c in codes] == ["st-warn", "st-good", "st-bad", "st-bad", "st-warn"]
    assert sip_code_rows(Counter()) == []


def test_charts_over_time_draw_each_direction_and_the_worst_with_threshold_marks():
    series = [
        {
            "t": T0 + timedelta(seconds=s),
            "all": {
                "mos": {"avg": 4.15, "min": 3.9 - s / 10},
                "fraction_lost": {"avg": 0.01, "max": 0.04},
            },
            "send": {"mos": {"avg": 4.0}, "fraction_lost": {"avg": 0.02}},
            "recv": {"mos": {"avg": 4.3}, "fraction_lost": {"avg": 0.0}},
        }
        for s in range(5)
    ]
    charts = series_charts(series)
    assert len(charts) == 4
    mos = ET.fromstring(charts[0])
    assert [p.find(f"{SVG}title").text for p in mos.iter(f"{SVG}polyline")] == [
        "send average",
        "recv average",
        "worst (min)",
    ]
    # Without a known direction (no definition): one average over every receive side.
    alone = ET.fromstring(
        series_charts([{k: v for k, v in p.items() if k in ("t", "all")} for p in series])[0]
    )
    assert [p.find(f"{SVG}title").text for p in alone.iter(f"{SVG}polyline")] == [
        "average",
        "worst (min)",
    ]
    assert len(mos.findall(f"{SVG}line[@stroke-dasharray]")) == 2  # good 3.5, bad 3.0
    assert "Packet loss (%)" in charts[2] and "worst (max)" in charts[2]
    assert "no samples yet" in charts[1]  # no jitter data: says so, draws no axes
    assert all("no samples yet" in c for c in series_charts([]))


def test_mos_histogram_is_coloured_by_grade_and_skips_the_empty_low_end():
    buckets = [{"lo": round(1.0 + i / 10, 1), "hi": 0, "count": 0} for i in range(35)]
    buckets[33]["count"], buckets[25]["count"] = 40, 3  # 4.3 and 3.5
    root = ET.fromstring(mos_histogram_svg(buckets))
    rects = root.findall(f"{SVG}rect")
    assert len(rects) == 15  # from MOS 3.0 (an empty good run's low end is not drawn)
    fills = {r.find(f"{SVG}title").text.split(":")[0]: r.get("fill") for r in rects}
    assert fills["4.3"] == "#4ade80" and fills["3.0"] == "#fcd34d"
    assert "no samples" in bar_chart("empty", [("a", 0, "red")])


def test_the_results_section_renders_from_a_view():
    macro = env.get_template("_results.html").module.results_section  # type: ignore[attr-defined]
    results = {
        "endpoints": 2,
        "registration_success_rate": 100.0,
        "percentiles": percentile_rows({}),
        "timings": [],
        "outcomes": outcome_rows({"SUCCESS": 2}, 2),
        "sip_codes": sip_code_rows(Counter()),
        "charts": series_charts([]),
        "mos_histograms": [mos_histogram_svg([])],
    }
    html = str(macro({"id": "r1", "call_success_rate": 100.0}, results))
    assert 'id="percentiles"' in html and "No endpoints." in html
    assert 'href="/runs/r1/endpoints?outcome=SUCCESS"' in html


def test_openapi_declares_bearer_keys_required_with_or_without_env_keys():
    # Nothing is served without a key or session, not even before the first user exists.
    for keys, security in (("", [{"bearerAuth": []}]), ("k1", [{"bearerAuth": []}])):
        app = create_app(
            ApiSettings(nats_url="nats://unused", database_url="postgresql://unused", api_keys=keys)
        )
        doc = app.openapi()
        scheme = doc["components"]["securitySchemes"]["bearerAuth"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        api = {p: ops for p, ops in doc["paths"].items() if p.startswith("/api/v1")}
        assert api and all(
            op["security"] == security for ops in api.values() for op in ops.values()
        )
        assert all("security" not in op for op in doc["paths"].get("/asyncapi", {}).values())
        assert all("401" in op["responses"] for ops in api.values() for op in ops.values())


def test_speech_quality_pairs_each_sampled_calls_pesq_with_its_e_model_mos():
    assert speech_view({"sampled": 0, "endpoints": []}) is None  # nothing sampled: no section
    speech = {
        "sampled": 2,
        "scored": 1,
        "endpoints": [
            {
                "endpoint_id": "B-1",
                "mos_lqo": 4.31,
                "mos_emodel": 4.41,
                "mode": "nb",
                "error": None,
            },
            {
                "endpoint_id": "B-2",
                "mos_lqo": None,
                "mos_emodel": 4.2,
                "mode": None,
                "error": "a 3 s call is too short to score",
            },
        ],
    }
    view = speech_view(speech)
    assert view is not None and view["scored"] == 1
    svg = ET.fromstring(view["chart"])
    bars = [t.text for t in svg.iter(f"{SVG}title")]
    # B-1 has both bars; B-2 only its E-model bar (no score, no invented bar)
    assert bars == ["PESQ MOS-LQO: 4.31", "E-model MOS (avg): 4.41", "E-model MOS (avg): 4.20"]
