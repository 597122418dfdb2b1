"""Server-rendered charts and topology: pure functions, checked on their markup."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from callmeter_api.svg import Chart, Series, line_chart, nice_ticks, topology, topology_columns

SMOKE = {
    "name": "smoke",
    "duration_s": 5,
    "groups": [
        {"name": "A", "endpoints": 4, "codecs": ["PCMU", "PCMA"], "calls": "B"},
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"]},
    ],
}


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 4.4) == [0, 2, 4, 6]
    assert nice_ticks(1.0, 4.5) == [1, 2, 3, 4, 5]
    assert nice_ticks(3, 3) == [3, 3.5, 4]  # flat data still gets an axis


def test_a_chart_is_valid_svg_with_one_polyline_per_unbroken_run():
    # A missing second (None) splits the line instead of dropping to zero.
    points = [(0, 4.4), (1, 4.3), (2, None), (3, 4.1), (4, 4.2)]
    svg = line_chart(Chart("MOS", "", [Series("recv", points)], (("ok", 3.5, "green"),)))
    root = ET.fromstring(svg)
    polylines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(polylines) == 2
    assert [len(p.get("points", "").split()) for p in polylines] == [2, 2]
    assert 'aria-label="MOS"' in svg and "stroke-dasharray" in svg  # the 3.5 threshold


def test_a_lone_second_is_drawn_as_a_dot():
    svg = line_chart(Chart("MOS", "", [Series("recv", [(0, 4.4), (1, None), (2, 4.3)])]))
    assert svg.count("<circle") == 2 and "<polyline" not in svg


def test_higher_values_are_drawn_higher():
    svg = line_chart(Chart("RTT", "ms", [Series("recv", [(0, 10.0), (1, 90.0)])]))
    (pts,) = re.findall(r'points="([^"]+)"', svg)
    (_, y0), (_, y1) = (map(float, p.split(",")) for p in pts.split())
    assert y1 < y0  # SVG y grows downwards


def test_an_empty_chart_says_so():
    svg = line_chart(Chart("Jitter", "ms", [Series("recv", [(0, None)])]))
    assert "no samples yet" in svg and "polyline" not in svg
    ET.fromstring(svg)


def test_labels_are_escaped():
    svg = line_chart(Chart("<b>", "", [Series("a&b", [(0, 1.0), (1, 2.0)])]))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a&amp;b" in svg
    ET.fromstring(svg)


def test_callers_sit_left_of_their_callees_and_cycles_terminate():
    assert topology_columns(SMOKE["groups"]) == {"A": 0, "B": 1}
    chain = [{"name": "A", "calls": "B"}, {"name": "B", "calls": "C"}, {"name": "C"}]
    assert topology_columns(chain) == {"A": 0, "B": 1, "C": 2}
    cycle = [{"name": "A", "calls": "B"}, {"name": "B", "calls": "A"}]
    assert set(topology_columns(cycle)) == {"A", "B"}


def test_topology_draws_cards_with_counts_codecs_and_an_arrow():
    svg = topology(SMOKE)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}g")) == 2  # one card per group
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert {"A", "B", "4 endpoints", "2 endpoints", "PCMU, PCMA", "4 calls"} <= set(texts)
    assert len(root.findall(f"{ns}path")) == 1 and 'marker-end="url(#arrow)"' in svg


def test_an_external_target_gets_a_dashed_card():
    d = {"groups": [{"name": "T", "endpoints": 1, "target_uri": "sip:echo@pbx.example"}]}
    svg = topology(d)
    assert "external target" in svg and "sip:echo@pbx.example" in svg
    ET.fromstring(svg)
