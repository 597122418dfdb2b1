"""A worker that binds one address and advertises another (a port-forwarding NAT, or
a worker bound to 0.0.0.0): its endpoints' Contact, Via and SDP carry the advertised
address, and a call through it carries real RTP. Here the worker binds 0.0.0.0 and
advertises 127.0.0.2, which reaches it as a public address would reach a NAT's
forwarded ports; nothing in its SIP names 127.0.0.1 or 0.0.0.0."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest

from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

ADVERTISED = "127.0.0.2"
PAIR = {
    "name": "bound to 0.0.0.0, advertised 127.0.0.2",
    "duration_s": 4,
    "groups": [
        {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B", "workers": ["w-nat"]},
        {"name": "B", "endpoints": 1, "codecs": ["PCMU"], "workers": ["w-nat"]},
    ],
}


def sip_texts(detail: Any) -> list[str]:
    """Every SIP message's text anywhere in an endpoint detail document."""
    if isinstance(detail, dict):
        return [t for v in detail.values() for t in sip_texts(v)]
    if isinstance(detail, list):
        return [t for v in detail for t in sip_texts(v)]
    whole = isinstance(detail, str) and "\n" in detail  # not a timeline's one-line summary
    return [detail] if whole and re.match(r"^(INVITE |SIP/2\.0 )", detail) else []


def test_a_worker_bound_to_any_address_advertises_the_one_it_was_given(
    platform: TestPlatform,
) -> None:
    platform.start_worker(
        "w-nat", CALLMETER_BIND_ADDRESS="0.0.0.0", CALLMETER_ADVERTISE_ADDRESS=ADVERTISED
    )
    try:
        platform.wait_workers(2)
        run_id = platform.run_test(PAIR)
        run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
        assert run["status"] == "COMPLETED", run
        endpoints = {e["id"]: e for e in run["endpoints"]}
        assert {k: (e["outcome"], e["worker_id"]) for k, e in endpoints.items()} == {
            "A-1": ("SUCCESS", "w-nat"),
            "B-1": ("SUCCESS", "w-nat"),
        }
        assert endpoints["B-1"]["contact_uri"].startswith(f"sip:b-1@{ADVERTISED}:")
        _, detail = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/A-1")
        assert detail["me"]["endpoint"]["mos"] > 4.0, detail["me"]["endpoint"]  # RTP came
        texts = sip_texts(detail)
        invites = [t for t in texts if t.startswith("INVITE ")]
        answers = [t for t in texts if t.startswith("SIP/2.0 200") and "v=0" in t]
        assert invites and answers, texts[:4]
        for text in invites + answers:  # ours (INVITE) and the peer's (200 with SDP)
            assert re.search(rf"^Contact:.*@{re.escape(ADVERTISED)}:", text, re.M), text
            assert f"c=IN IP4 {ADVERTISED}" in text, text
        for text in invites:
            assert re.search(rf"^Via: SIP/2.0/UDP {re.escape(ADVERTISED)}:", text, re.M), text
        # The only local address left is the peer's note of where a request came from
        # (Via received=, RFC 3261 18.2.1): the kernel's source, not what we advertise.
        said = re.sub(r";received=127\.0\.0\.1", "", "".join(invites + answers))
        assert "127.0.0.1" not in said and "0.0.0.0" not in said
    finally:
        platform.kill("w-nat", signal.SIGTERM)
