"""Endpoint list shaping, pairing and the SIP timeline: pure, no servers."""

from __future__ import annotations

from callmeter_api.endpoint_views import (
    ListQuery,
    endpoint_page,
    group_breakdown,
    group_means,
    paired_endpoints,
    status_class,
    timeline,
)
from callmeter_api.views import counts_of

DEF = {
    "groups": [
        {"name": "A", "endpoints": 5, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"]},
    ]
}


def ep(i: str, phase=None, outcome=None, sip=None, setup=None):  # type: ignore[no-untyped-def]
    group = i.split("-")[0]
    return {
        "id": i,
        "group": group,
        "role": "caller" if group == "A" else "receiver",
        "phase": phase,
        "outcome": outcome,
        "sip_code": sip,
        "call_setup_ms": setup,
        "reason": "",
    }


EPS = [
    ep("A-1", "INCALL", setup=40.0),
    ep("A-2", "RINGING", sip=180),
    ep("A-10", "CLOSED", "CALL_FAILED", 486),
    ep("B-1", "INCALL"),
    ep("B-2", "CLOSED", "SUCCESS", 200, 20.0),
]
MOS = {"A-1": 4.3, "B-1": 4.1, "B-2": 2.5}


def test_colours_follow_phase_and_outcome():
    assert [status_class(e) for e in EPS] == ["st-good", "st-warn", "st-bad", "st-good", "st-good"]
    assert status_class(ep("A-3", "REGISTERED")) == ""


def test_natural_order_by_default_and_filters_combine():
    page = endpoint_page(EPS, MOS, ListQuery())
    assert [e["id"] for e in page["items"]] == ["A-1", "A-2", "A-10", "B-1", "B-2"]
    failed = endpoint_page(EPS, MOS, ListQuery(outcome="failed"))
    assert [e["id"] for e in failed["items"]] == ["A-10"]
    incall_b = endpoint_page(EPS, MOS, ListQuery(phase="INCALL", group="B"))
    assert [e["id"] for e in incall_b["items"]] == ["B-1"]
    assert endpoint_page(EPS, MOS, ListQuery(q="486"))["total"] == 1


def test_sorting_puts_missing_values_last_and_desc_reverses():
    by_mos = endpoint_page(EPS, MOS, ListQuery(sort="mos"))
    assert [e["id"] for e in by_mos["items"]] == ["B-2", "B-1", "A-1", "A-2", "A-10"]
    assert by_mos["items"][0]["mos"] == 2.5
    by_code = endpoint_page(EPS, MOS, ListQuery(sort="sip_code", order="desc"))
    assert by_code["items"][0]["id"] == "A-10"


def test_pages_are_clamped_and_counted():
    eps = [ep(f"A-{i}", "INCALL") for i in range(1, 1001)]
    page = endpoint_page(eps, {}, ListQuery(page=99, per_page=100))
    assert (page["total"], page["pages"], page["page"]) == (1000, 10, 10)
    assert page["items"][0]["id"] == "A-901" and len(page["items"]) == 100


def test_bad_query_parameters_fall_back_to_defaults():
    q = ListQuery.parse({"phase": "NOPE", "sort": "evil", "page": "x", "per_page": "100000"})
    assert (q.phase, q.sort, q.page, q.per_page) == ("", "endpoint", 1, 500)
    assert ListQuery(sort="mos", page=3).params(page=1) == {"sort": "mos"}


def test_callers_pair_round_robin_onto_their_callee_group():
    # Caller n of A calls receiver ((n-1) mod 2)+1 of B.
    assert [paired_endpoints(DEF, f"A-{n}") for n in range(1, 6)] == [
        ["B-1"],
        ["B-2"],
        ["B-1"],
        ["B-2"],
        ["B-1"],
    ]
    assert paired_endpoints(DEF, "B-1") == ["A-1", "A-3", "A-5"]
    assert paired_endpoints(DEF, "Z-1") == [] and paired_endpoints(DEF, "A-x") == []


def test_group_breakdown_counts_and_averages():
    groups = group_breakdown(DEF, counts_of(EPS), group_means(EPS, MOS))
    assert groups[0] == {
        "name": "A",
        "endpoints": 3,
        "calls": "B",
        "codecs": ["PCMU"],
        "phases": {"RINGING": 1, "INCALL": 1, "CLOSED": 1},
        "succeeded": 0,
        "failed": 1,
        "mos": 4.3,
    }
    assert groups[1]["succeeded"] == 1 and groups[1]["mos"] == 3.3


def test_timeline_merges_events_and_messages_with_deltas():
    events = [
        {
            "type": "CallAttempted",
            "occurred_at": "2026-01-01T10:00:00.000+00:00",
            "target_uri": "sip:b@x",
        },
        {
            "type": "CallEstablished",
            "occurred_at": "2026-01-01T10:00:00.120+00:00",
            "codec": "PCMU",
        },
    ]
    messages = [
        {
            "ts": "2026-01-01T10:00:00.010+00:00",
            "direction": "out",
            "text": "INVITE sip:b@x SIP/2.0\r\nVia: x\r\n\r\n",
        },
        {"ts": "2026-01-01T10:00:00.100+00:00", "direction": "in", "text": "SIP/2.0 200 OK\r\n"},
    ]
    t = timeline(events, messages)
    assert [(e["kind"], e["label"]) for e in t] == [
        ("event", "calling sip:b@x"),
        ("sip", "INVITE sip:b@x SIP/2.0"),
        ("sip", "SIP/2.0 200 OK"),
        ("event", "call established (PCMU)"),
    ]
    assert [round(e["t_ms"]) for e in t] == [0, 10, 100, 120]
    assert [round(e["delta_ms"]) for e in t] == [0, 10, 90, 20]
    assert t[1]["text"].startswith("INVITE") and "Via: x" in t[1]["text"]
    assert timeline([], []) == []
