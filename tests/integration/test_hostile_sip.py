"""Hostile SIP at a receiver host that still has free call slots (issue 15, section 4).

Our own senders (tests.support.hostile): the 4.5 KB INVITE with a junk Content-Type,
an INVITE without SDP for a user the host does not have (what really aborted hosts:
a rejection inside onIncomingCall made pjsua2 free the request twice), and bursts of
valid INVITEs back to back (each one costs two media sockets before the application
sees it). The host must live through all of them and still take its real call.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.test_host_calls import HostProc, finished, start_ep, start_hosts
from tests.support import hostile

pytestmark = pytest.mark.integration
hosts = pytest.fixture(name="hosts")(start_hosts)


def _ready(h: HostProc, eid: str) -> str:
    ev = h.wait_for(lambda e: e["ev"] == "endpoint_ready" and e["endpoint_id"] == eid, 10)
    return str(ev["contact_uri"])


def _alive_for(h: HostProc, seconds: float) -> None:
    """Heartbeats keep coming for `seconds`: the process is alive and its loop turns."""
    n = len(h.of("heartbeat"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        h.pump(0.1)
    assert h.proc.poll() is None, f"host exited with {h.proc.poll()}"
    assert len(h.of("heartbeat")) >= n + int(seconds) - 1


def _real_call_succeeds(rh: HostProc, ch: HostProc, eid: str, uri: str) -> None:
    start_ep(ch, "c-" + eid, "caller", 2.0, uri)
    for h, e in ((ch, "c-" + eid), (rh, eid)):
        fin = h.wait_for(finished(e), 20)
        assert fin["outcome"] == "SUCCESS", (fin, h.of("call_failed"), h.of("error"))


def test_malformed_and_sdp_less_invites_do_not_abort_a_host_with_free_slots(hosts):  # type: ignore[no-untyped-def]
    rh, ch = hosts(), hosts()
    start_ep(rh, "r0", "receiver", 2.0)
    uri = _ready(rh, "r0")
    # Addressed to the receiver itself: pjsip would parse its first 4,000 bytes as an
    # INVITE without SDP and r0 would answer it; the kernel filter drops it instead.
    assert hostile.oversized_invite("127.0.0.1", rh.sip_port, "r0") > 4400
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        for user in ("nobody", "r0-typo"):  # no SDP, users the host does not serve
            s.sendto(
                hostile.invite("127.0.0.1", rh.sip_port, user, lport), ("127.0.0.1", rh.sip_port)
            )
        s.settimeout(3)
        finals = set()
        while len(finals) < 2:  # the host turns both away (after holding their slots)
            msg = s.recv(65535).decode()
            if not msg.startswith("SIP/2.0 1"):
                finals.add((msg.split(" ", 2)[1], msg.split("Call-ID: ", 1)[1].split("\r\n")[0]))
    assert {code for code, _ in finals} == {"404"}, finals
    _alive_for(rh, 2.0)
    _real_call_succeeds(rh, ch, "r0", uri)


@pytest.mark.parametrize("count", [60, 300])
def test_a_burst_of_invites_is_turned_away_and_the_host_takes_its_real_call(hosts, count):  # type: ignore[no-untyped-def]
    rh, ch = hosts(), hosts()
    start_ep(rh, "r0", "receiver", 2.0)
    uri = _ready(rh, "r0")
    # Misrouted INVITEs with SDP offers, distinct Call-IDs, back to back: before the
    # fix 30 of them aborted the host (ioqueue keys exhausted by media sockets).
    hostile.invite_burst("127.0.0.1", rh.sip_port, "nobody", count)
    _alive_for(rh, 2.0)
    _real_call_succeeds(rh, ch, "r0", uri)
