"""Call records: the host line, its event, and the pure summary of a run's calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callmeter_events import CallRecorded, decode, encode
from callmeter_storage import calls
from callmeter_worker import protocol as proto
from callmeter_worker.supervisor.translate import to_events

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _line(**over: object) -> dict:
    msg = proto.event(
        "call_record",
        endpoint_id="a-1",
        seq=2,
        attempted_t=T0.timestamp(),
        outcome="SUCCESS",
        code=200,
        reason="",
        codec="PCMU/8000",
        time_to_trying_ms=1.5,
        time_to_ringing_ms=3.0,
        post_dial_delay_ms=3.0,
        call_setup_ms=5.0,
        answered_t=T0.timestamp() + 0.005,
        duration_s=2.0,
        quality={"send": {"mos": 4.3, "loss_pct": 0.0, "jitter_ms": None}, "recv": {}},
    )
    return {**msg, **over}


def test_host_line_becomes_a_call_record() -> None:
    msg = proto.decode_line(proto.encode(_line()))
    (event,) = to_events("r1", msg)
    assert isinstance(event, CallRecorded)
    assert event.seq == 2 and event.attempted_at == T0 and event.sip_code == 200
    assert event.answered_at == T0 + timedelta(milliseconds=5)
    assert (event.send_mos, event.send_jitter_ms, event.recv_mos) == (4.3, None, None)
    assert event.subject() == "callmeter.run.r1.endpoint.a-1.call_record"
    assert decode(encode(event)) == event
    # the same call reported twice is one fact
    assert to_events("r1", msg)[0].event_id == event.event_id


def test_bad_call_record_lines_are_refused() -> None:
    with pytest.raises(proto.ProtocolError, match="outcome"):
        proto.validate(_line(outcome="FINE"))
    with pytest.raises(proto.ProtocolError, match="seq"):
        proto.validate({k: v for k, v in _line().items() if k != "seq"})


def test_start_endpoint_pattern_is_checked() -> None:
    base = {
        "op": "start_endpoint",
        "endpoint_id": "s1",
        "role": "caller",
        "codecs": ["PCMU"],
        "duration_s": 5,
        "target_uri": "sip:b@127.0.0.1",
        "username": "a",
    }
    msg = proto.validate({**base, "pattern": {"kind": "repeat", "hold_s": 1}})
    assert msg["pattern"]["pause_s"] == 0.0 and (msg["group_index"], msg["group_size"]) == (0, 1)
    assert proto.validate(dict(base))["pattern"] == {"kind": "single"}
    for bad, field in (
        ({"pattern": {"kind": "burst"}}, "pattern.kind"),
        ({"pattern": {"kind": "rate", "hold_s": 1}}, "pattern.cps"),
        ({"pattern": {"kind": "rate", "cps": 1, "hold_s": 1, "hold": "x"}}, "pattern.hold"),
        ({"group_index": 3, "group_size": 2}, "group_index"),
    ):
        with pytest.raises(proto.ProtocolError, match=field):
            proto.validate({**base, **bad})


def _span(at_s: float, answer_s: float | None, dur: float | None, outcome: str = "SUCCESS"):
    at = T0 + timedelta(seconds=at_s)
    answered = at + timedelta(seconds=answer_s) if answer_s is not None else None
    return (at, answered, dur, outcome)


def test_summary_and_series() -> None:
    spans = [
        _span(0.0, 0.1, 2.0),
        _span(0.5, 0.1, 2.0),
        _span(1.2, None, None, "CALL_FAILED"),
        _span(2.1, 0.2, 1.0, "MEDIA_ERROR"),  # answered, yet a failed call
    ]
    assert calls.summarise(spans) == {"attempts": 4, "answered": 3, "failed": 2, "asr": 0.75}
    s = calls.series(spans)
    assert s["bin_s"] == 1 and s["t"] == [0, 1, 2, 3]
    assert s["attempted"] == [2, 1, 1, 0]
    assert s["established"] == [2, 0, 1, 0]
    assert s["failed"] == [0, 1, 1, 0]
    # in progress at 0 s: none yet; at 1 s and 2 s: the first two (ending 2.1 and 2.6 s);
    # at 3 s: the fourth (answered 2.3 s, ends 3.3 s)
    assert s["concurrent"] == [0, 2, 2, 1]
    assert calls.summarise([])["asr"] is None and calls.series([])["t"] == []


def test_long_runs_get_wider_bins() -> None:
    spans = [_span(float(i), 0.1, 1.0) for i in range(0, 1000, 2)]
    s = calls.series(spans, max_points=100)
    assert s["bin_s"] == 11 and len(s["t"]) <= 100
    assert sum(v * s["bin_s"] for v in s["attempted"]) == pytest.approx(500)


def test_filter_sql_names_only_known_columns() -> None:
    where, args = calls.CallFilter(status="failed", group="a", sip_code=503).where("r")
    assert where == "run_id = %s AND NOT (outcome = ANY(%s)) AND grp = %s AND sip_code = %s"
    assert args[0] == "r" and args[2:] == ["a", 503]


def test_calls_page_query_and_charts() -> None:
    from callmeter_api.calls_view import CallQuery, charts, pages

    q = CallQuery.parse({"status": "failed", "sip_code": "503", "page": "2", "per_page": "25"})
    assert q.filter() == calls.CallFilter(status="failed", sip_code=503)
    assert q.offset == 25 and q.params(page=3)["page"] == 3
    junk = CallQuery.parse({"status": "x", "sip_code": "5o3", "page": "-1", "per_page": "7"})
    assert junk == CallQuery()  # a bad query string falls back, the page never fails
    assert pages(0, 50) == 1 and pages(101, 50) == 3
    rates, concurrent = charts(calls.series([_span(0.0, 0.1, 2.0), _span(1.0, None, None)]))
    assert "Calls per second" in rates and "established" in rates and "<polyline" in rates
    assert "Concurrent calls" in concurrent
