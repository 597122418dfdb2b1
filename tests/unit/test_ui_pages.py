"""Templates render from shaped views alone (no servers): full pages and live blocks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callmeter_api.endpoint_views import (
    ListQuery,
    endpoint_page,
    group_breakdown,
    group_means,
    timeline,
)
from callmeter_api.pages import env, render_block
from callmeter_api.svg import topology
from callmeter_api.views import compare_view, counts_of, run_view

DEFINITION = {
    "name": "office",
    "duration_s": 20,
    "buildup_s": 0,
    "groups": [
        {"name": "A", "endpoints": 2, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"]},
    ],
}
NOW = datetime.now(UTC).isoformat()


def run_ctx(status: str = "RUNNING") -> dict:  # type: ignore[type-arg]
    run = {
        "run_id": "r1",
        "test_id": "t1",
        "status": status,
        "definition": DEFINITION,
        "started_at": NOW,
        "history": [{"status": status, "at": NOW, "reason": ""}],
    }
    endpoints = [
        {
            "endpoint_id": f"{g}-{i}",
            "group": g,
            "role": "caller" if g == "A" else "receiver",
            "phase": "INCALL" if i == 1 else "RINGING",
            "outcome": None,
        }
        for g in "AB"
        for i in (1, 2)
    ]
    summary = {"samples": 8, "mos": 4.4, "jitter_ms": 55.0, "fraction_lost": 0.0, "rtt_ms": None}
    view = run_view(run, endpoints, summary)
    mos = {"A-1": 4.4}
    return {
        "run": view,
        "live": status not in ("COMPLETED", "FAILED"),
        "groups": group_breakdown(
            DEFINITION, counts_of(endpoints), group_means(view["endpoints"], mos)
        ),
        "listing": endpoint_page(view["endpoints"], mos, ListQuery(per_page=25)),
        "elapsed_s": 5,
        "total_s": 20,
        "topology": topology(DEFINITION),
    }


def test_a_live_run_page_connects_one_stream_and_colours_by_threshold():
    html = env.get_template("run.html").render(**run_ctx())
    assert html.count("sse-connect=") == 1 and 'sse-swap="live"' in html
    assert 'id="stop"' in html and 'id="rerun"' not in html
    assert '<div class="v good">4.40</div>' in html  # MOS 4.4 is good
    assert '<div class="v bad">55.0 ms</div>' in html  # jitter above 50 ms is audible
    assert 'class="st-good" data-endpoint="A-1"' in html
    assert 'class="st-warn" data-endpoint="A-2"' in html
    assert 'class="topology"' in html


def test_the_run_page_and_compare_show_each_direction_under_the_worse_one():
    ctx = run_ctx("COMPLETED")
    summary = {
        "samples": 8,
        "mos": 3.9,
        "jitter_ms": 2.0,
        "fraction_lost": 0.05,
        "send": {"mos": 3.9, "jitter_ms": 2.0, "fraction_lost": 0.05},
        "recv": {"mos": 4.4, "jitter_ms": 1.0, "fraction_lost": 0.0},
    }
    view = run_view({**ctx["run"], "run_id": "r1", "definition": DEFINITION}, [], summary)
    assert (view["summary"]["loss_pct"], view["summary"]["send"]["loss_pct"]) == (5.0, 5.0)
    assert view["summary"]["recv"]["loss_pct"] == 0.0
    html = env.get_template("run.html").render(**{**ctx, "run": view})
    loss = html.split('data-sides="loss_pct"', 1)[1].split("</div>", 1)[0]
    assert loss == '>send <span class="bad">5.00</span> · recv <span class="good">0.00</span>'
    other = run_view(
        {**ctx["run"], "run_id": "r2", "definition": DEFINITION},
        [],
        {
            "mos": 4.4,
            "fraction_lost": 0.0,
            "send": {"mos": 4.4, "fraction_lost": 0.0},
            "recv": {"mos": 4.4, "fraction_lost": 0.0},
        },
    )
    rows = compare_view([other, view])
    assert rows[1]["values"]["loss_pct_send"] == 5.0 and rows[1]["values"]["loss_pct_recv"] == 0.0
    assert rows[1]["deltas"]["loss_pct_send"] == 5.0 and rows[1]["deltas"]["mos_recv"] == 0.0
    page = env.get_template("compare.html").render(rows=rows, charts=[])
    assert "Loss % send" in page and "Loss % recv" in page


def test_compare_has_a_mos_lqo_column_empty_where_no_call_was_scored():
    ctx = run_ctx("COMPLETED")
    base = {**ctx["run"], "definition": DEFINITION}
    scored = run_view({**base, "run_id": "r1"}, [], {"mos": 4.4, "mos_lqo": 4.2})
    worse = run_view({**base, "run_id": "r2"}, [], {"mos": 4.4, "mos_lqo": 3.7})
    unscored = run_view({**base, "run_id": "r3"}, [], {"mos": 4.4, "mos_lqo": None})
    rows = compare_view([scored, worse, unscored])
    assert [r["values"]["mos_lqo"] for r in rows] == [4.2, 3.7, None]
    assert rows[1]["deltas"]["mos_lqo"] == pytest.approx(-0.5)
    assert rows[2]["deltas"]["mos_lqo"] is None  # nothing scored: no change to show
    page = env.get_template("compare.html").render(rows=rows, charts=[])
    header = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "MOS-LQO" in header
    cells = [row.split("</tr>", 1)[0] for row in page.split("<tbody>", 1)[1].split("<tr>")[1:]]
    assert "3.70" in cells[1] and "-0.50" in cells[1] and "—" in cells[2]


def test_the_run_page_says_an_unmeasured_threshold_was_not_measured():
    ctx = run_ctx("COMPLETED")
    evaluation = {
        "passed": False,
        "results": [
            {"expression": "mos_avg >= 4", "actual": 4.4, "passed": True},
            {"expression": "mos_lqo_avg >= 4", "actual": None, "passed": False},
        ],
    }
    definition = {**DEFINITION, "thresholds": ["mos_avg >= 4", "mos_lqo_avg >= 4"]}
    run = {**ctx["run"], "definition": definition, "evaluation": evaluation}
    html = env.get_template("run.html").render(**{**ctx, "run": run})
    table = html.split('id="thresholds"', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tr")[2:]
    assert "<td>pass</td>" in rows[0] and "<td>not measured</td>" in rows[1], table


def test_the_live_block_alone_is_a_fragment_and_a_finished_run_offers_rerun():
    fragment = render_block("run.html", "live", **run_ctx("COMPLETED"))
    assert "<html" not in fragment and 'id="phases"' in fragment
    assert 'id="rerun"' in fragment and 'id="stop"' not in fragment
    page = env.get_template("run.html").render(**run_ctx("COMPLETED"))
    assert "sse-connect" not in page  # nothing left to follow


def test_endpoint_list_page_has_sort_links_and_pager():
    ctx = run_ctx()
    ctx["listing"] = endpoint_page(ctx["run"]["endpoints"], {}, ListQuery(per_page=3, sort="mos"))
    html = env.get_template("endpoints.html").render(**ctx)
    assert 'aria-sort="ascending"' in html and "Page 1 of 2" in html
    assert 'href="?sort=mos&amp;page=2&amp;per_page=3"' in html
    table = render_block("endpoints.html", "table", **ctx)
    assert "<form" not in table and "Page 1 of 2" in table


def test_endpoint_page_renders_ladder_and_empty_pair():
    t = timeline(
        [], [{"ts": NOW, "direction": "out", "text": "INVITE sip:x SIP/2.0\r\nCall-ID: 1"}]
    )
    side = {
        "endpoint": {"id": "A-1", "role": "caller", "group": "A", "css": ""},
        "timeline": t,
        "messages": 1,
        "charts": ['<svg class="chart"></svg>'],
    }
    html = env.get_template("endpoint.html").render(
        run={"id": "r1", "test_id": "t1", "status": "COMPLETED", "name": "office"},
        me=side,
        pair=None,
        pairs=[],
    )
    assert 'id="ladder"' in html and "Call-ID: 1" in html and "has no peer" in html
