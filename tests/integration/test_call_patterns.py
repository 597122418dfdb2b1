"""Call patterns through the whole platform: a rate group and a repeat group of real
pjsua2 endpoints calling through a real Kamailio, checked against the wire.

One run (~20 s): A (4 callers, 4 calls/s, 0.5 s holds, 12 calls: max_calls) -> B (4
receivers), and C (2 callers, 3 calls each: 0.5 s hold, 0.3 s pause) -> D (2 receivers), all registered
with Kamailio and calling AORs through it. dumpcap records Kamailio's SIP port; tshark
counts the INVITEs (distinct Call-IDs) from each group's users and their 200 OKs. The
call records must match those counts and the plan (12 and 6 calls), every one answered.
"""

from __future__ import annotations

import csv
import io
import subprocess
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.kamailio import Kamailio, accounts, running_kamailio
from tests.support.tshark import capture, require_tshark

pytestmark = pytest.mark.integration
# 12 at 4/s (max_calls, SIPp -m); 2 endpoints x 3 calls. The run lasts 5 s so that a
# loaded machine's slower call setup still fits every planned call in it.
RATE_CALLS, REPEAT_CALLS = 12, 6


@pytest.fixture(scope="module")
def kamailio():  # type: ignore[no-untyped-def]
    users = accounts("a", 4) | accounts("b", 4) | accounts("c", 2) | accounts("d", 2)
    with running_kamailio(users) as server:
        yield server


def _group(name: str, n: int, kamailio: Kamailio, **extra: object) -> dict:
    users = accounts(name.lower(), n)
    return {
        "name": name,
        "endpoints": n,
        "registrar": kamailio.registrar() | {"expires_s": 60},
        "accounts": [{"username": u, "password": p} for u, p in users.items()],
        **extra,
    }


def _wire_counts(pcap: Path) -> tuple[Counter[str], Counter[str]]:
    """Per calling user: INVITEs (distinct Call-IDs) and 200 OKs to them, from tshark."""
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-Y",
            'sip.CSeq.method == "INVITE"',
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.from.user",
            "-e",
            "sip.Call-ID",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    invites: dict[str, set[str]] = {}
    answered: dict[str, set[str]] = {}
    for line in out.splitlines():
        method, status, user, call_id = (line.split("\t") + ["", "", "", ""])[:4]
        if method == "INVITE":
            invites.setdefault(user, set()).add(call_id)
        elif status == "200":
            answered.setdefault(user, set()).add(call_id)
    return (
        Counter({u: len(c) for u, c in invites.items()}),
        Counter({u: len(c) for u, c in answered.items()}),
    )


@pytest.fixture(scope="module")
def pattern_run(platform, kamailio, tmp_path_factory):  # type: ignore[no-untyped-def]
    require_tshark()
    definition = {
        "name": "patterns",
        "duration_s": 5,
        "groups": [
            _group(
                "A",
                4,
                kamailio,
                calls="B",
                pattern={"kind": "rate", "cps": 4, "hold_s": 0.5, "max_calls": RATE_CALLS},
            ),
            _group("B", 4, kamailio),
            _group(
                "C",
                2,
                kamailio,
                calls="D",
                pattern={"kind": "repeat", "hold_s": 0.5, "pause_s": 0.3, "calls": 3},
            ),
            _group("D", 2, kamailio),
        ],
    }
    pcap = tmp_path_factory.mktemp("patterns") / "sip.pcap"
    with capture(pcap, [(kamailio.port, kamailio.port)]):
        run_id = platform.run_test(definition)
        run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
        deadline = time.monotonic() + 30  # records are stored by metrics-ingest
        while time.monotonic() < deadline:
            _, page = platform.request("GET", f"/api/v1/runs/{run_id}/calls?limit=1")
            if page["total"] >= RATE_CALLS + REPEAT_CALLS:
                break
            time.sleep(0.3)
    return run_id, run, _wire_counts(pcap)


def _download(platform, path: str) -> bytes:  # type: ignore[no-untyped-def]
    req = urllib.request.Request(platform.base + path, headers=platform.auth)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


def _records(platform, run_id: str, query: str = "") -> list[dict]:  # type: ignore[no-untyped-def]
    status, page = platform.request("GET", f"/api/v1/runs/{run_id}/calls?limit=1000{query}")
    assert status == 200, page
    return page["calls"]


def test_records_match_the_plan_and_the_wire(platform, pattern_run):  # type: ignore[no-untyped-def]
    run_id, run, (invites, answered) = pattern_run
    records = _records(platform, run_id)
    by_group = Counter(r["grp"] for r in records)
    assert by_group == {"A": RATE_CALLS, "C": REPEAT_CALLS}, by_group
    assert all(r["outcome"] == "SUCCESS" and r["answered_at"] for r in records), records
    # tshark: every record is one INVITE on the wire and one 200 OK, per calling user
    for group, prefix in (("A", "a"), ("C", "c")):
        wire = sum(n for u, n in invites.items() if u.startswith(prefix))
        ok = sum(n for u, n in answered.items() if u.startswith(prefix))
        assert wire == ok == by_group[group], (group, invites, answered)
    for r in records:
        assert 0 < r["time_to_trying_ms"] <= r["call_setup_ms"] < 2000, r
        assert r["duration_s"] == pytest.approx(0.5, abs=0.25), r
        assert r["recv_mos"] is not None and r["recv_mos"] > 3.5, r
    eps = {e["id"]: e for e in run["endpoints"]}
    assert all(eps[f"B-{i}"]["outcome"] == "SUCCESS" for i in range(1, 5)), eps


def test_rate_spacing_and_repeat_sequence(platform, pattern_run):  # type: ignore[no-untyped-def]
    run_id, _, _ = pattern_run
    rate = _records(platform, run_id, "&group=A")
    starts = sorted(datetime.fromisoformat(r["attempted_at"]).timestamp() for r in rate)
    # the group's arrivals every 0.25 s from one instant, whichever endpoint makes them
    offsets = [round(t - starts[0], 3) for t in starts]
    assert all(abs(off - k * 0.25) < 0.12 for k, off in enumerate(offsets)), offsets
    repeat = _records(platform, run_id, "&group=C")
    for ep in ("C-1", "C-2"):
        calls = sorted((r for r in repeat if r["endpoint_id"] == ep), key=lambda r: r["seq"])
        assert [r["seq"] for r in calls] == [1, 2, 3]
        for prev, nxt in zip(calls, calls[1:], strict=False):
            pause = (
                datetime.fromisoformat(nxt["attempted_at"])
                - datetime.fromisoformat(prev["answered_at"])
            ).total_seconds() - prev["duration_s"]
            assert 0.25 <= pause < 1.0, (prev, nxt)


def test_a_repeating_endpoints_trace_keeps_its_first_call(platform, pattern_run):  # type: ignore[no-untyped-def]
    """Every call succeeded: each endpoint's SIP trace holds its registration and its
    first call only (a later call's messages are kept only if it fails), where the
    wire carried three calls of each."""
    run_id, _, (invites, _) = pattern_run
    assert invites["c1"] == 3, invites
    for ep in ("C-1", "D-1"):
        _, detail = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/{ep}")
        sip = [e["text"] for e in detail["me"]["timeline"] if e["kind"] == "sip"]
        call_ids = {
            line.split(":", 1)[1].strip()
            for text in sip
            if text.startswith("INVITE ") or text.split(" ", 1)[0] == "INVITE"
            for line in text.splitlines()
            if line.lower().startswith(("call-id:", "i:"))
        }
        assert len(call_ids) == 1, (ep, call_ids)
        assert any(t.startswith("REGISTER ") for t in sip), ep
        assert any(t.startswith("BYE ") for t in sip), ep  # the first call, to its end


def test_summary_filters_and_exports(platform, pattern_run):  # type: ignore[no-untyped-def]
    run_id, _, _ = pattern_run
    total = RATE_CALLS + REPEAT_CALLS
    status, summary = platform.request("GET", f"/api/v1/runs/{run_id}/calls/summary")
    assert status == 200
    assert (summary["attempts"], summary["answered"], summary["failed"]) == (total, total, 0)
    assert summary["asr"] == 1.0
    series = summary["series"]
    assert sum(series["attempted"]) * series["bin_s"] == total
    assert max(series["concurrent"]) >= 2
    assert _records(platform, run_id, "&status=failed") == []
    status, body = platform.request("GET", f"/api/v1/runs/{run_id}/calls?status=bogus")
    assert status == 422 and "status" in str(body)
    rows = list(
        csv.DictReader(
            io.StringIO(
                _download(platform, f"/api/v1/runs/{run_id}/calls/export?format=csv").decode()
            )
        )
    )
    assert len(rows) == total and rows[0]["group_name"] in ("A", "C")
    table = pq.read_table(
        io.BytesIO(
            _download(platform, f"/api/v1/runs/{run_id}/calls/export?format=parquet&group=C")
        )
    )
    assert table.num_rows == REPEAT_CALLS


def test_calls_page(platform, pattern_run):  # type: ignore[no-untyped-def]
    run_id, _, _ = pattern_run
    status, html = platform.get_html(f"/runs/{run_id}/calls?group=C&per_page=25")
    assert status == 200
    assert html.count('<tr class="st-good">') == REPEAT_CALLS and "C-2" in html
    assert 'id="call-summary"' in html and "Calls per second" in html
    _, html = platform.get_html(f"/runs/{run_id}/calls?status=failed")
    assert "No call records match these filters" in html
    _, page = platform.get_html(f"/runs/{run_id}")
    assert f'href="/runs/{run_id}/calls"' in page
