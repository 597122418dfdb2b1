"""Scenario actions and call-setup options between real endpoint hosts, through Kamailio.

Hosts are driven directly (the dispatcher passes group options through
EndpointConfig; these tests are about what the endpoint does with them).
"""

from __future__ import annotations

import pytest

from tests.integration.test_host_calls import finished, start_hosts
from tests.support.kamailio import running_kamailio

pytestmark = pytest.mark.integration
hosts = pytest.fixture(name="hosts")(start_hosts)
USERS = {f"u{i}": f"pw{i}" for i in range(1, 9)}


@pytest.fixture(scope="module")
def kamailio():  # type: ignore[no-untyped-def]
    with running_kamailio(USERS) as server:
        yield server


def _start(host, kam, eid, user, role, duration, target=None, **extra):  # type: ignore[no-untyped-def]
    host.send(
        {
            "op": "start_endpoint",
            "endpoint_id": eid,
            "role": role,
            "codecs": ["PCMU"],
            "duration_s": duration,
            "username": user,
            "target_uri": target,
            "registrar": kam.registrar(),
            "account": {"username": user, "password": USERS[user]},
            **extra,
        }
    )


def _call(hosts, kam, duration, caller=None, receiver=None, users=("u1", "u2")):  # type: ignore[no-untyped-def]
    """One registered receiver and one caller dialling its AOR; both run to the end."""
    rh, ch = hosts("--trace-sip"), hosts("--trace-sip")
    _start(rh, kam, "r", users[1], "receiver", duration, **(receiver or {}))
    rh.wait_for(lambda e: e["ev"] == "registered", 10)
    _start(ch, kam, "c", users[0], "caller", duration, kam.aor(users[1]), **(caller or {}))
    ch.wait_for(finished("c"), duration + 40)
    rh.wait_for(finished("r"), 15)
    return rh, ch


def test_dtmf_rfc4733_and_info_are_received_as_sent(hosts, kamailio):  # type: ignore[no-untyped-def]
    # The caller sends "159#" in-band (RFC 4733) at 1 s, then by SIP INFO at 2.5 s.
    scenario = [
        {"at_s": 1, "action": "dtmf", "digits": "159#", "method": "rfc4733"},
        {"at_s": 2.5, "action": "dtmf", "digits": "159#", "method": "info"},
    ]
    rh, ch = _call(hosts, kamailio, 4.0, caller={"scenario": scenario})
    # Each execution is reported with its result...
    done = [(e["action"], e["ok"]) for e in ch.of("scenario_action", "c")]
    assert done == [("dtmf", True), ("dtmf", True)]
    # ...and the far end detects every digit, per method, in order.
    got: dict[str, str] = {}
    for e in rh.of("dtmf_received", "r"):
        got[e["method"]] = got.get(e["method"], "") + e["digits"]
    assert got == {"rfc4733": "159#", "info": "159#"}
    assert [e["outcome"] for e in rh.of("endpoint_finished")] == ["SUCCESS"]


def test_hold_then_resume_stops_and_restarts_media(hosts, kamailio):  # type: ignore[no-untyped-def]
    scenario = [{"at_s": 1.5, "action": "hold"}, {"at_s": 3.5, "action": "resume"}]
    rh, ch = _call(hosts, kamailio, 6.0, caller={"scenario": scenario})
    assert [(e["action"], e["ok"]) for e in ch.of("scenario_action")] == [
        ("hold", True),
        ("resume", True),
    ]
    # Two re-INVITEs went out in the dialog (after the initial INVITE).
    invites = [
        m
        for m in ch.of("sip_message", "c")
        if m["direction"] == "out" and m["text"].startswith("INVITE")
    ]
    assert len(invites) == 3
    assert "a=sendonly" in invites[1]["text"] and "a=sendrecv" in invites[2]["text"]
    # The holder's received packet rate: ~50, then ~0 while held (the far end answered
    # recvonly and stops sending), then ~50 again.
    rates = [
        e["metrics"]["packet_rate_ps"] or 0
        for e in ch.of("sample", "c")
        if e["direction"] == "recv"
    ]
    held = [i for i, r in enumerate(rates) if r < 5]
    assert held, rates
    assert max(rates[: held[0]]) > 45 and max(rates[held[-1] + 1 :]) > 45, rates
    assert [e["outcome"] for e in ch.of("endpoint_finished")] == ["SUCCESS"]


def test_answer_delay_and_ring_time_shape_the_setup_timings(hosts, kamailio):  # type: ignore[no-untyped-def]
    # The receiver waits 0.5 s before 180 and rings 1 s; 100rel required on both sides.
    rh, ch = _call(
        hosts,
        kamailio,
        2.0,
        caller={"options": {"prack": "required", "session_timer": "optional"}},
        receiver={"options": {"answer_delay_s": 0.5, "ring_time_s": 1.0, "prack": "required"}},
        users=("u3", "u4"),
    )
    est = ch.of("call_established", "c")[0]
    assert est["time_to_trying_ms"] < 300
    assert (
        450 <= est["time_to_ringing_ms"] <= 1000
        and est["post_dial_delay_ms"] == est["time_to_ringing_ms"]
    )
    assert 1450 <= est["call_setup_ms"] <= 2200
    phases = [e["phase"] for e in ch.of("phase", "c")]
    assert phases[:5] == ["INITIALIZING", "CALLING", "RINGING", "NEGOTIATING", "INCALL"]
    # 100rel: the 180 was sent reliably and PRACKed.
    texts = [m["text"] for m in ch.of("sip_message", "c")]
    assert any(t.startswith("PRACK ") for t in texts)
    assert [e["outcome"] for e in ch.of("endpoint_finished")] == ["SUCCESS"]


def test_invite_timeout_cancels_and_times_out(hosts, kamailio):  # type: ignore[no-untyped-def]
    # The receiver would answer after 5 s; the caller gives up after 1.5 s with CANCEL.
    rh, ch = _call(
        hosts,
        kamailio,
        2.0,
        caller={"options": {"invite_timeout_s": 1.5}},
        receiver={"options": {"answer_delay_s": 0.2, "ring_time_s": 5.0}},
        users=("u5", "u6"),
    )
    fin = ch.of("endpoint_finished", "c")[0]
    assert fin["outcome"] == "TIMEOUT" and fin["sip_code"] == 487, fin
    assert any(m["text"].startswith("CANCEL ") for m in ch.of("sip_message", "c"))


def test_update_media_reinvite_switches_the_codec(hosts, kamailio):  # type: ignore[no-untyped-def]
    # Both sides allow PCMU and PCMA, PCMU first; at 1.5 s the caller re-offers PCMA first.
    both = {"codecs": ["PCMU", "PCMA"]}
    scenario = [{"at_s": 1.5, "action": "update_media", "codec": "PCMA"}]
    rh, ch = _call(
        hosts,
        kamailio,
        4.0,
        caller={**both, "scenario": scenario},
        receiver=both,
        users=("u7", "u8"),
    )
    assert [(e["action"], e["ok"]) for e in ch.of("scenario_action", "c")] == [
        ("update_media", True)
    ]
    assert ch.of("call_established", "c")[0]["codec"] == "PCMU"
    # The re-INVITE offers PCMA (payload type 8) first.
    invites = [
        m["text"]
        for m in ch.of("sip_message", "c")
        if m["direction"] == "out" and m["text"].startswith("INVITE")
    ]
    assert len(invites) == 2
    assert " RTP/AVP 0 8" in invites[0] and " RTP/AVP 8 0" in invites[1], invites[1]
    # Both ends' samples name the negotiated codec: PCMU, then PCMA for the rest of the call,
    # with media still flowing at 50 packets/s after the switch.
    for h, eid in ((ch, "c"), (rh, "r")):
        recv = [e["metrics"] for e in h.of("sample", eid) if e["direction"] == "recv"]
        codecs = [m["codec"] for m in recv]
        switch = codecs.index("PCMA")
        assert switch > 0 and set(codecs[:switch]) == {"PCMU"}, codecs
        assert set(codecs[switch:]) == {"PCMA"}, codecs
        assert any(45 <= (m["packet_rate_ps"] or 0) <= 55 for m in recv[switch:]), recv
        assert [e["outcome"] for e in h.of("endpoint_finished", eid)] == ["SUCCESS"]
