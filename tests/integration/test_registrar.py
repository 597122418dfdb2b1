"""Registrar mode through the whole platform, against a real Kamailio (infra/kamailio).

One run exercises every registrar path at once (one Kamailio, one run, ~15 s):
  A (4 callers) -> B (4 receivers): REGISTER with digest auth, call the AOR via the proxy
  W (1 idle) with a wrong password: REGISTRATION_FAILED with Kamailio's real code
  U (1 caller) dials an AOR nobody registered: CALL_FAILED 404
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from callmeter_api.traces import endpoint_history
from callmeter_common.bus import Bus
from tests.support.kamailio import accounts, running_kamailio

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kamailio():  # type: ignore[no-untyped-def]
    users = accounts("a", 4) | accounts("b", 4) | {"w1": "right", "u1": "pw-u1"}
    with running_kamailio(users) as server:
        yield server


def _accounts(prefix: str, n: int) -> list[dict[str, str]]:
    return [{"username": u, "password": p} for u, p in accounts(prefix, n).items()]


@pytest.fixture(scope="module")
def registrar_run(platform, kamailio):  # type: ignore[no-untyped-def]
    reg = kamailio.registrar() | {"expires_s": 60}
    definition = {
        "name": "registrar",
        "duration_s": 3,
        "groups": [
            {
                "name": "A",
                "endpoints": 4,
                "calls": "B",
                "registrar": reg,
                "accounts": _accounts("a", 4),
            },
            {"name": "B", "endpoints": 4, "registrar": reg, "accounts": _accounts("b", 4)},
            {
                "name": "W",
                "endpoints": 1,
                "registrar": reg,
                "accounts": [{"username": "w1", "password": "wrong"}],
            },
            {
                "name": "U",
                "endpoints": 1,
                "registrar": reg,
                "accounts": _accounts("u", 1),
                "target_uri": kamailio.aor("nobody"),
            },
        ],
    }
    run_id = platform.run_test(definition)
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    return run_id, run, {e["id"]: e for e in run["endpoints"]}


def test_eight_endpoints_register_and_call_each_other(registrar_run):  # type: ignore[no-untyped-def]
    _, run, eps = registrar_run
    # Every A/B endpoint registered (time recorded) and finished its call SUCCESS.
    for eid in [f"{g}-{i}" for g in "AB" for i in range(1, 5)]:
        assert eps[eid]["outcome"] == "SUCCESS", eps[eid]
        assert eps[eid]["time_to_register_ms"] is not None and eps[eid]["time_to_register_ms"] > 0
        assert eps[eid]["codec"] == "PCMU"
    # The caller dialled the receiver's AOR, which Kamailio routed to its contact.
    assert eps["B-1"]["contact_uri"] == "sip:b1@callmeter.test"
    assert eps["A-1"]["target_uri"] == "sip:b1@callmeter.test"


def test_wrong_password_is_registration_failed_with_the_real_code(registrar_run):  # type: ignore[no-untyped-def]
    _, _, eps = registrar_run
    w = eps["W-1"]
    # Kamailio re-challenges bad credentials: pjsua gives up and reports that 401.
    assert w["outcome"] == "REGISTRATION_FAILED", w
    assert w["sip_code"] == 401 and "401" in w["reason"]


def test_unknown_callee_is_call_failed_404(registrar_run):  # type: ignore[no-untyped-def]
    _, _, eps = registrar_run
    assert eps["U-1"]["outcome"] == "CALL_FAILED", eps["U-1"]
    assert eps["U-1"]["sip_code"] == 404


def test_sip_trace_gives_the_call_timeline(registrar_run, platform, nats_server, database_url):  # type: ignore[no-untyped-def]
    run_id, _, _ = registrar_run
    # SIP messages reach PostgreSQL through metrics-ingest after the run has ended: its
    # watermark says when every one of them is stored (the trace is complete from then).
    platform.wait_samples_stored(run_id)

    async def history():  # type: ignore[no-untyped-def]
        bus = await Bus.connect(nats_server.url, "test-registrar-trace")
        try:
            return await endpoint_history(bus, database_url, run_id, "A-1")
        finally:
            await bus.close()

    events, messages = asyncio.run(history())

    def step(m: dict) -> str:  # type: ignore[type-arg]
        # "out INVITE INVITE" / "in 180 INVITE": direction, method or status, CSeq method
        start = m["text"].split("\r\n", 1)[0].split(" ")
        cseq = next(h for h in m["text"].split("\r\n") if h.lower().startswith("cseq:"))
        return (
            f"{m['direction']} {start[1] if start[0] == 'SIP/2.0' else start[0]} {cseq.split()[-1]}"
        )

    timeline = [step(m) for m in messages]
    # REGISTER (challenged, then accepted) comes first and its Expires: 0 last.
    assert timeline[:4] == [
        "out REGISTER REGISTER",
        "in 401 REGISTER",
        "out REGISTER REGISTER",
        "in 200 REGISTER",
    ], timeline
    call = [t for t in timeline if not t.endswith("REGISTER")]
    expected = [
        "out INVITE INVITE",
        "in 100 INVITE",
        "in 180 INVITE",
        "in 200 INVITE",
        "out ACK ACK",
        "out BYE BYE",
        "in 200 BYE",
    ]
    assert call == expected, timeline
    # The de-registration follows the call: its REGISTER (Expires: 0) goes out once the
    # BYE has. Kamailio answers it itself while the BYE's 200 comes from the callee's
    # host, so the two answers arrive in either order (CI saw the BYE's last).
    bye = timeline.index("out BYE BYE")
    dereg = [
        (t, m)
        for t, m in list(zip(timeline, messages, strict=True))[bye:]
        if t.endswith("REGISTER")
    ]
    assert len(timeline) == 4 + len(expected) + len(dereg), timeline  # nothing else
    assert dereg[0][0] == "out REGISTER REGISTER" and dereg[-1][0] == "in 200 REGISTER", timeline
    assert all(
        "Expires: 0" in m["text"] or "expires=0" in m["text"]
        for t, m in dereg
        if t.startswith("out")
    ), dereg
    # Every message is the full text, time-stamped, in order.
    assert all("Call-ID:" in m["text"] and "Via:" in m["text"] for m in messages)
    stamps = [m["ts"] for m in messages]
    assert stamps == sorted(stamps)
    # First RTP sits between ACK and BYE: the samples record it relative to the answer.
    with psycopg.connect(database_url) as conn:
        (first_rtp,) = conn.execute(
            "SELECT min(first_rtp_ms) FROM metric_samples WHERE run_id = %s AND endpoint_id = 'A-1'",
            (run_id,),
        ).fetchone()
    assert first_rtp is not None and 0 <= first_rtp < 1000
    assert any(e["type"] == "CallEstablished" for e in events)


def test_a_run_whose_callers_all_fail_ends_in_time_with_a_reason(platform, kamailio):  # type: ignore[no-untyped-def]
    # Both callers have wrong passwords (Kamailio refuses them); the receivers register
    # and would wait for ever. They end NO_INCOMING_CALL at duration + margin instead.
    reg = kamailio.registrar() | {"expires_s": 60}
    wrong = [{"username": u, "password": "wrong"} for u in accounts("a", 2)]
    run_id = platform.run_test(
        {
            "name": "callers-fail",
            "duration_s": 2,
            "groups": [
                {"name": "F", "endpoints": 2, "calls": "G", "registrar": reg, "accounts": wrong},
                {"name": "G", "endpoints": 2, "registrar": reg, "accounts": _accounts("b", 2)},
            ],
        }
    )
    started = time.monotonic()
    # the old behaviour: duration + receiver wait + grace (92 s), then "never reported"
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=40)
    took = time.monotonic() - started
    eps = {e["id"]: e for e in run["endpoints"]}
    for eid in ("F-1", "F-2"):
        assert (eps[eid]["outcome"], eps[eid]["sip_code"]) == ("REGISTRATION_FAILED", 401)
        assert eps[eid]["target_uri"] is not None  # dialled, or would have: dispatched
    for eid in ("G-1", "G-2"):
        assert eps[eid]["outcome"] == "NO_INCOMING_CALL", eps[eid]
        assert "no incoming call within 12 s" in eps[eid]["reason"]  # 2 s + 0 + 10 s margin
    assert run["status"] == "FAILED" and run["reason"] == (
        "no receiver got a call (2 ended NO_INCOMING_CALL); the callers ended: "
        "2 REGISTRATION_FAILED 401"
    ), run
    assert took < 30, took
