"""SIP transports (TCP, TLS) and SRTP (SDES) between real endpoint hosts, direct mode.

Each test runs one caller host and one receiver host over loopback (pjsua2,
2-4 s calls). The TLS certificate is self-signed, made with the openssl CLI
at test time; hosts do not verify it (callmeter_worker.host.transport.Transports).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_host_calls import HostProc, finished, start_ep, start_hosts
from tests.support.kamailio import Kamailio

pytestmark = pytest.mark.integration
hosts = pytest.fixture(name="hosts")(start_hosts)


def _ready(eid: str):  # type: ignore[no-untyped-def]
    return lambda e: e["ev"] == "endpoint_ready" and e["endpoint_id"] == eid


def _direct_call(  # type: ignore[no-untyped-def]
    hosts, duration: float, caller: dict, receiver: dict, host_args: tuple[str, ...] = ()
) -> tuple[HostProc, HostProc, str]:
    """A receiver with `receiver` options, a caller dialling its contact with `caller`."""
    rh, ch = hosts("--trace-sip", *host_args), hosts("--trace-sip", *host_args)
    start_ep(rh, "r", "receiver", duration, options=receiver)
    uri = rh.wait_for(_ready("r"), 10)["contact_uri"]
    start_ep(ch, "c", "caller", duration, uri, options=caller)
    ch.wait_for(finished("c"), duration + 20)
    return rh, ch, uri


def _recv_rates(h: HostProc, eid: str) -> list[float]:
    return [
        e["metrics"]["packet_rate_ps"] or 0 for e in h.of("sample", eid) if e["direction"] == "recv"
    ]


def _assert_media_flowed(rh: HostProc, ch: HostProc) -> None:
    rh.wait_for(finished("r"), 15)
    for h, eid in ((ch, "c"), (rh, "r")):
        assert [e["outcome"] for e in h.of("endpoint_finished", eid)] == ["SUCCESS"], h.events[-5:]
        rates = _recv_rates(h, eid)
        # the first and last samples cover partial seconds; the ones between are full
        assert len(rates) >= 3 and all(45 <= r <= 55 for r in rates[1:-1]), (eid, rates)


def _sdp_of(h: HostProc, eid: str, direction: str, start: str) -> str:
    """The first SIP message of the endpoint's dialog starting with `start` (with its SDP)."""
    for m in h.of("sip_message", eid):
        if m["direction"] == direction and m["text"].startswith(start) and "v=0" in m["text"]:
            return m["text"]
    raise AssertionError(f"no {start!r} with SDP ({direction}) traced for {eid}")


def _top_via(text: str) -> str:
    return next(line for line in text.split("\r\n") if line.startswith(("Via:", "v:")))


def test_tcp_call_between_two_hosts(hosts):  # type: ignore[no-untyped-def]
    tcp = {"transport": "tcp"}
    rh, ch, uri = _direct_call(hosts, 4.0, tcp, tcp)
    assert uri == f"sip:r@127.0.0.1:{rh.sip_port};transport=tcp"
    invite = _sdp_of(ch, "c", "out", "INVITE ")
    assert "SIP/2.0/TCP" in _top_via(invite)  # the Via names the transport
    _assert_media_flowed(rh, ch)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_call_through_kamailio(hosts, request, transport):  # type: ignore[no-untyped-def]
    """Register and call through Kamailio with every request on a TCP or TLS connection."""
    users = {"t1": "pw-t1", "t2": "pw-t2"}
    tls = request.getfixturevalue("tls_files") if transport == "tls" else None
    kam = Kamailio(Path(tempfile.mkdtemp(prefix="kamailio-")), users, tls=tls)
    kam.start()
    try:
        args = ("--trace-sip", *(("--tls-cert", tls[0], "--tls-key", tls[1]) if tls else ()))
        rh, ch = hosts(*args), hosts(*args)
        for h, eid, user, role, target in (
            (rh, "r", "t2", "receiver", None),
            (ch, "c", "t1", "caller", kam.aor("t2")),
        ):
            if role == "caller":
                rh.wait_for(lambda e: e["ev"] == "registered", 10)
            start_ep(
                h,
                eid,
                role,
                4.0,
                target,
                username=user,
                registrar=kam.registrar(transport),
                account={"username": user, "password": users[user]},
            )
        ch.wait_for(finished("c"), 30)
        _assert_media_flowed(rh, ch)
    finally:
        kam.stop()
    # REGISTER, INVITE and BYE all went over the stream transport
    via = f"SIP/2.0/{transport.upper()}"
    for h, eid in ((rh, None), (ch, "c")):
        out = [
            m["text"]
            for m in h.of("sip_message", eid)
            if m["direction"] == "out"
            and m["text"].split(" ", 1)[0] in ("REGISTER", "INVITE", "BYE")
        ]
        assert out and all(via in _top_via(t) for t in out), out
    # Kamailio relayed the INVITE to the receiver over the same kind of transport
    relayed = [
        m["text"]
        for m in rh.of("sip_message", "r")
        if m["direction"] == "in" and m["text"].startswith("INVITE ")
    ]
    assert relayed and via in _top_via(relayed[0]), relayed


@pytest.mark.parametrize("srtp", ["mandatory", "optional"])
def test_srtp_sdes_call_encrypts_media_and_flows(hosts, srtp):  # type: ignore[no-untyped-def]
    opts = {"srtp": srtp}
    rh, ch, _ = _direct_call(hosts, 4.0, opts, opts)
    offer, answer = _sdp_of(ch, "c", "out", "INVITE "), _sdp_of(ch, "c", "in", "SIP/2.0 200")
    # mandatory offers RTP/SAVP; optional offers RTP/AVP with keys (RFC 4568 best effort)
    profile = "RTP/SAVP" if srtp == "mandatory" else "RTP/AVP"
    assert f"m=audio {offer.split('m=audio ', 1)[1].split()[0]} {profile} " in offer
    assert "a=crypto:" in offer and "a=crypto:" in answer  # SDES keys both ways
    _assert_media_flowed(rh, ch)


def test_srtp_optional_caller_falls_back_to_rtp_with_a_plain_receiver(hosts):  # type: ignore[no-untyped-def]
    rh, ch, _ = _direct_call(hosts, 4.0, {"srtp": "optional"}, {"srtp": "off"})
    offer, answer = _sdp_of(ch, "c", "out", "INVITE "), _sdp_of(ch, "c", "in", "SIP/2.0 200")
    assert "a=crypto:" in offer and "a=crypto:" not in answer  # keys offered, declined
    _assert_media_flowed(rh, ch)


@pytest.mark.parametrize(
    ("caller", "receiver"),
    [
        ({"options": {"srtp": "mandatory"}}, {"options": {"srtp": "off"}}),
        ({"options": {"srtp": "off"}}, {"options": {"srtp": "mandatory"}}),
        ({"codecs": ["PCMA"]}, {"codecs": ["PCMU"]}),
    ],
    ids=["srtp-caller", "srtp-receiver", "codec"],
)
def test_an_offer_the_peer_cannot_accept_is_negotiation_failed_488(hosts, caller, receiver):  # type: ignore[no-untyped-def]
    rh, ch = hosts("--trace-sip"), hosts("--trace-sip")
    start_ep(rh, "r", "receiver", 3.0, call_wait_s=4.0, **receiver)
    uri = rh.wait_for(_ready("r"), 10)["contact_uri"]
    start_ep(ch, "c", "caller", 3.0, uri, **caller)
    fin = ch.wait_for(finished("c"), 20)
    assert fin["outcome"] == "NEGOTIATION_FAILED" and fin["sip_code"] == 488, fin
    assert ch.of("call_attempted", "c")[0]["target_uri"] == uri
    assert not ch.of("call_established")
    # pjsua turned the INVITE away before the application saw it: the receiver never
    # had a call and ends on its own once its wait is over, saying so
    r = rh.wait_for(finished("r"), 10)
    assert r["outcome"] == "NO_INCOMING_CALL" and "4 s" in r["reason"], r
    ready_t = rh.wait_for(_ready("r"), 0)["t"]
    assert 4.0 <= r["t"] - ready_t <= 6.0, r["t"] - ready_t
    assert rh.proc.poll() is None and ch.proc.poll() is None


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    d: Path = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return str(cert), str(key)


def test_tls_call_between_two_hosts(hosts, tls_files):  # type: ignore[no-untyped-def]
    cert, key = tls_files
    tls_args = ("--trace-sip", "--tls-cert", cert, "--tls-key", key)
    rh, ch = hosts(*tls_args), hosts(*tls_args)
    # Another process holds the receiver's preferred TLS port (SIP port + 1): its
    # listener moves to a free port and the contact URI says which.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", rh.sip_port + 1))
        squatter.listen()
        start_ep(rh, "r", "receiver", 4.0, options={"transport": "tls"})
        uri = rh.wait_for(_ready("r"), 10)["contact_uri"]
    assert uri.startswith("sip:r@127.0.0.1:") and uri.endswith(";transport=tls")
    assert uri != f"sip:r@127.0.0.1:{rh.sip_port + 1};transport=tls"
    start_ep(ch, "c", "caller", 4.0, uri, options={"transport": "tls"})
    ch.wait_for(finished("c"), 25)
    invite = _sdp_of(ch, "c", "out", "INVITE ")
    assert "SIP/2.0/TLS" in _top_via(invite)
    _assert_media_flowed(rh, ch)


def _udp_tos(pid: int) -> dict[int, int]:
    """{local UDP port: IP TOS byte} of a process's sockets, as `ss --tos` reports them."""
    out = subprocess.run(["ss", "-uanpH", "--tos"], capture_output=True, text=True, timeout=10)
    ports = {}
    for line in out.stdout.splitlines():
        if f"pid={pid}," in line and " tos:" in line:
            port = int(line.split()[3].rsplit(":", 1)[1])
            ports[port] = int(line.split(" tos:", 1)[1].split()[0], 16)
    return ports


def test_dscp_rtp_marks_the_media_sockets(hosts):  # type: ignore[no-untyped-def]
    ss = shutil.which("ss")
    usage = subprocess.run([ss, "--help"], capture_output=True, text=True) if ss else None
    if usage is None or "--tos" not in usage.stdout + usage.stderr:
        pytest.skip("ss (iproute2) with --tos is needed to read the sockets' TOS")
    rh, ch = hosts(), hosts()
    start_ep(rh, "r", "receiver", 3.0, options={"dscp_rtp": 26})  # AF31: TOS 0x68
    uri = rh.wait_for(_ready("r"), 10)["contact_uri"]
    start_ep(ch, "c", "caller", 3.0, uri)
    ch.wait_for(lambda e: e["ev"] == "call_established", 10)
    marked, plain = _udp_tos(rh.proc.pid), _udp_tos(ch.proc.pid)
    # The receiver's RTP and RTCP sockets carry DSCP 26; its SIP socket is not marked
    # (only RTP marking is an option), and the caller without dscp_rtp marks nothing.
    assert marked.pop(rh.sip_port) == 0, marked
    assert len(marked) >= 2 and set(marked.values()) == {26 << 2}, marked
    assert plain and set(plain.values()) == {0}, plain
    ch.wait_for(finished("c"), 20)
    assert [e["outcome"] for e in ch.of("endpoint_finished", "c")] == ["SUCCESS"]
