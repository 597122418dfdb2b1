"""SIPp as the far end: the worker calls SIPp UASes, a SIPp UAC calls a worker receiver,
and malformed SIP at a receiver's port harms nobody else."""

from __future__ import annotations

import pytest

from tests.integration.test_host_calls import finished, start_ep, start_hosts
from tests.support.sipp import send_garbage, uac_call, uas_echo, uas_reject

pytestmark = pytest.mark.integration
hosts = pytest.fixture(name="hosts")(start_hosts)


def test_worker_calls_sipp_uas_and_rejections_give_their_code(platform, tmp_path):  # type: ignore[no-untyped-def]
    # Three SIPp servers: one answers and echoes RTP, two reject with 486 and 503.
    echo, busy, unavailable = (
        uas_echo(tmp_path),
        uas_reject(tmp_path, 486),
        uas_reject(tmp_path, 503),
    )
    try:
        run_id = platform.run_test(
            {
                "name": "sipp-uas",
                "duration_s": 3,
                "groups": [
                    {"name": "S", "endpoints": 1, "target_uri": f"sip:service@{echo.uri_host}"},
                    {"name": "X", "endpoints": 1, "target_uri": f"sip:busy@{busy.uri_host}"},
                    {"name": "Y", "endpoints": 1, "target_uri": f"sip:down@{unavailable.uri_host}"},
                ],
            }
        )
        run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    finally:
        for s in (echo, busy, unavailable):
            s.stop()
    eps = {e["id"]: e for e in run["endpoints"]}
    # The answered call carried real media both ways (SIPp echoes our RTP).
    assert eps["S-1"]["outcome"] == "SUCCESS", eps["S-1"]
    assert eps["S-1"]["codec"] == "PCMU"
    # Rejections end the endpoint CALL_FAILED with SIPp's exact code.
    assert (eps["X-1"]["outcome"], eps["X-1"]["sip_code"]) == ("CALL_FAILED", 486), eps["X-1"]
    assert (eps["Y-1"]["outcome"], eps["Y-1"]["sip_code"]) == ("CALL_FAILED", 503), eps["Y-1"]


def test_sipp_uac_calls_a_worker_receiver(hosts, tmp_path):  # type: ignore[no-untyped-def]
    # A receiver waits; SIPp dials it directly, holds 3 s and hangs up.
    h = hosts()
    start_ep(h, "r0", "receiver", 3.0)
    h.wait_for(lambda e: e["ev"] == "endpoint_ready", 5)
    uac = uac_call(tmp_path, f"127.0.0.1:{h.sip_port}", "r0", 3000)
    try:
        assert uac.wait(30) == 0, uac.log.read_text()[-2000:]
    finally:
        uac.stop()
    fin = h.wait_for(finished("r0"), 15)
    # The receiver answered, got RTP back (SIPp echoes it) and saw SIPp's BYE.
    assert fin["outcome"] == "SUCCESS", fin
    recv = [e["metrics"] for e in h.of("sample", "r0") if e["direction"] == "recv"]
    assert recv and max(m["packet_rate_ps"] or 0 for m in recv) > 40


def test_garbage_at_a_receiver_harms_only_its_own_host(platform):  # type: ignore[no-untyped-def]
    # Two receiver groups with different codecs land on two endpoint hosts.
    run_id = platform.run_test(
        {
            "name": "garbage",
            "duration_s": 4,
            "groups": [
                {"name": "A", "endpoints": 1, "calls": "B", "codecs": ["PCMU"]},
                {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
                {"name": "C", "endpoints": 1, "calls": "D", "codecs": ["PCMA"]},
                {"name": "D", "endpoints": 1, "codecs": ["PCMA"]},
            ],
        }
    )
    # As soon as B-1 advertises its contact, its SIP port gets junk and truncated SIP.
    contact = platform.wait_contact(run_id, "B-1")
    host, port = contact.split("@", 1)[1].split(";")[0].split(":")
    assert send_garbage(host, int(port)) > 0
    # The run completes, and the other host's pair is untouched.
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    eps = {e["id"]: e for e in run["endpoints"]}
    assert eps["C-1"]["outcome"] == "SUCCESS" and eps["D-1"]["outcome"] == "SUCCESS", eps
    # B's host, at worst, failed its own endpoints with a clear outcome.
    assert eps["B-1"]["outcome"] in ("SUCCESS", "OSERROR"), eps["B-1"]
    assert eps["A-1"]["outcome"] is not None
