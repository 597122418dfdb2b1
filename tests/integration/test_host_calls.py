"""Real endpoint-host subprocesses calling each other over loopback (pjsua2, ~30 s)."""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from callmeter_vocabulary.metrics import KEYS
from callmeter_vocabulary.sample import metrics_of
from callmeter_worker import protocol as proto

pytestmark = pytest.mark.integration
pytest.importorskip("pjsua2")
# Disjoint 200-port blocks, reused in turn: every module that starts hosts draws from here.
_rtp_bases = itertools.cycle(random.sample(range(20000, 60000, 200), 200))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readable(line: bytes) -> dict:
    """A host line as a dict; a sample's fields by name (direction, seq, metrics...)."""
    msg = proto.decode_line(line)
    if msg["ev"] == "sample":
        s = msg["sample"]
        msg |= {"direction": s.direction, "seq": s.seq, "metrics": metrics_of(s)}
    return msg


class HostProc:
    def __init__(self, *extra: str) -> None:
        for attempt in range(3):
            try:
                self._start(*extra)
                return
            except AssertionError as exc:
                # a free port found here can be taken by another process before the
                # host binds it (the library start then fails): take new ports
                if "already in use" not in str(exc) or attempt == 2:
                    raise

    def _start(self, *extra: str) -> None:
        self.sip_port = _free_udp_port()
        args = [
            "--sip-port",
            str(self.sip_port),
            "--rtp-port",
            str(next(_rtp_bases)),
            "--rtp-port-range",
            "100",
            *extra,
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callmeter_worker.host", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # own process group: teardown kills it and any child
        )
        self.events: list[dict] = []
        self.lines: list[bytes] = []  # as the host wrote them
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda e: e["ev"] == "host_ready", 10)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._q.put(_readable(line))
        self._q.put(None)

    def send(self, cmd: dict) -> None:
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def pump(self, timeout: float = 0.0) -> dict | None:
        try:
            ev = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if ev is None:
            said = [e.get("message") for e in self.events if e["ev"] == "error"]
            raise AssertionError(f"host exited with {self.proc.wait()}; its errors: {said}")
        self.events.append(ev)
        return ev

    def wait_for(self, pred: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if pred(ev):
                return ev
        while time.monotonic() < deadline:
            ev = self.pump(0.1)
            if ev is not None and pred(ev):
                return ev
        raise AssertionError("timed out waiting for event")

    def drain(self) -> None:
        """After exit: collect every event the host wrote before it ended."""
        while (ev := self._q.get(timeout=5)) is not None:
            self.events.append(ev)

    def of(self, ev: str, endpoint_id: str | None = None) -> list[dict]:
        return [
            e
            for e in self.events
            if e["ev"] == ev and (endpoint_id is None or e.get("endpoint_id") == endpoint_id)
        ]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def start_hosts() -> Iterator[Callable[..., HostProc]]:
    """Fixture body: a factory of hosts, all killed at teardown (reused by other modules)."""
    started: list[HostProc] = []

    def start(*extra: str) -> HostProc:
        started.append(HostProc(*extra))
        return started[-1]

    try:
        yield start
    finally:
        for h in started:
            h.kill()


hosts = pytest.fixture(name="hosts")(start_hosts)


def start_ep(host: HostProc, eid: str, role: str, duration: float, target=None, **kw) -> None:
    host.send(
        {
            "op": "start_endpoint",
            "endpoint_id": eid,
            "role": role,
            "codecs": ["PCMU"],
            "duration_s": duration,
            "target_uri": target,
            "username": eid,
            **kw,
        }
    )


def finished(eid: str) -> Callable[[dict], bool]:
    return lambda e: e["ev"] == "endpoint_finished" and e["endpoint_id"] == eid


def run_pairs(recv_host: HostProc, call_host: HostProc, n: int, duration: float, **kw):
    uris = {}
    for i in range(n):
        start_ep(recv_host, f"r{i}", "receiver", duration)
        ev = recv_host.wait_for(
            lambda e, i=i: e["ev"] == "endpoint_ready" and e["endpoint_id"] == f"r{i}", 5
        )
        uris[i] = ev["contact_uri"]
        assert uris[i] == f"sip:r{i}@127.0.0.1:{recv_host.sip_port}"
    for i in range(n):
        start_ep(call_host, f"c{i}", "caller", duration, uris[i], **kw)
    deadline = time.monotonic() + duration + 15
    ids = {recv_host: [f"r{i}" for i in range(n)], call_host: [f"c{i}" for i in range(n)]}
    for h, eids in ids.items():
        for eid in eids:
            h.wait_for(finished(eid), max(0.1, deadline - time.monotonic()))
    return ids


def test_four_calls_between_two_hosts(hosts):
    rh, ch = hosts(), hosts("--trace-sip")
    ids = run_pairs(rh, ch, 2, 5.0)
    for h, eids in ids.items():
        for eid in eids:
            fin = h.of("endpoint_finished", eid)
            assert [f["outcome"] for f in fin] == ["SUCCESS"], fin
            phases = [e["phase"] for e in h.of("phase", eid)]
            assert phases[0] == "INITIALIZING" and phases[-1] == "CLOSED" and "INCALL" in phases
            assert len(h.of("call_established", eid)) == 1 and len(h.of("call_ended", eid)) == 1
            for direction in ("send", "recv"):
                samples = [e for e in h.of("sample", eid) if e["direction"] == direction]
                assert len(samples) >= 4, (eid, direction, len(samples))
                assert [s["seq"] for s in samples] == list(range(len(samples)))
                for s in samples:
                    assert set(s["metrics"]) == set(KEYS)
            recv = [e["metrics"] for e in h.of("sample", eid) if e["direction"] == "recv"]
            for m in recv[1:-1]:
                assert 45 <= m["packet_rate_ps"] <= 55, m["packet_rate_ps"]
                assert m["mos"] >= 4.2 and m["fraction_lost"] == 0  # G.711, no loss
                assert m["codec"] == "PCMU" and m["clock_rate"] == 8000
    est = ch.of("call_established", "c0")[0]
    assert est["codec"] == "PCMU" and est["call_setup_ms"] is not None
    assert est["time_to_ringing_ms"] is not None
    # --trace-sip: every SIP message of c0's dialog, attributed by Call-ID
    trace = [(m["direction"], m["text"].split(" ", 2)[:2]) for m in ch.of("sip_message", "c0")]
    assert ("out", ["INVITE", f"sip:r0@127.0.0.1:{rh.sip_port}"]) in trace
    assert ("in", ["SIP/2.0", "180"]) in trace and ("out", ["BYE", trace[0][1][1]]) in trace
    assert not rh.of("sip_message")  # off by default
    # both hosts stay up and shut down cleanly
    for h in (rh, ch):
        h.send({"op": "shutdown"})
        assert h.proc.wait(10) == 0


def test_drop_tx_pct_shows_as_receiver_loss(hosts):
    rh, ch = hosts(), hosts("--drop-tx-pct", "5")
    # four calls x 9 s ~ 1800 packets: binomial sigma ~0.5 %, so 3.5..6.5 % is ~3 sigma
    run_pairs(rh, ch, 4, 9.0, drop_tx_pct=5)
    lost = expected = 0
    for e in rh.of("sample"):
        if e["direction"] == "recv":
            lost += e["metrics"]["packets_lost"]
            expected += e["metrics"]["expected_packets"]
    assert expected > 1500
    assert 3.5 <= 100 * lost / expected <= 6.5, (lost, expected)
    # MOS follows the E-model: 5 % random loss on G.711 (Bpl 25.1) gives R ~ 77, MOS ~ 3.9
    mos = [
        e["metrics"]["mos"]
        for e in rh.of("sample")
        if e["direction"] == "recv" and e["metrics"]["expected_packets"] and e["seq"] > 0
    ]
    assert 3.5 <= sum(mos) / len(mos) <= 4.15, mos
    # the caller learns about it through RTCP: send-direction remote loss appears
    remote = [
        e["metrics"]["remote_fraction_lost"]
        for e in ch.of("sample")
        if e["direction"] == "send" and e["metrics"]["remote_fraction_lost"]
    ]
    assert remote, "no RTCP-reported loss on the caller's send direction"


def test_ninth_account_is_rejected_and_host_survives(hosts):
    h = hosts()
    for i in range(8):
        start_ep(h, f"r{i}", "receiver", 5.0)
    for i in range(8):
        h.wait_for(lambda e, i=i: e["ev"] == "endpoint_ready" and e["endpoint_id"] == f"r{i}", 5)
    start_ep(h, "r8", "receiver", 5.0)
    err = h.wait_for(lambda e: e["ev"] == "error", 5)
    assert err["endpoint_id"] == "r8" and "8 accounts" in err["message"]
    h.send({"op": "bogus"})
    assert "bad command" in h.wait_for(lambda e: e["ev"] == "error" and e is not err, 5)["message"]
    n = len(h.of("heartbeat"))
    h.wait_for(lambda e: e["ev"] == "heartbeat" and len(h.of("heartbeat")) > n + 1, 5)
    assert h.proc.poll() is None
    # stopping a receiver that never got a call finishes it and frees its account
    h.send({"op": "hangup", "endpoint_id": "r0"})
    fin = h.wait_for(finished("r0"), 5)
    assert fin["outcome"] == "CALL_FAILED"
    start_ep(h, "r9", "receiver", 5.0)
    h.wait_for(lambda e: e["ev"] == "endpoint_ready" and e["endpoint_id"] == "r9", 5)
    h.send({"op": "shutdown"})
    assert h.proc.wait(10) == 0
    h.drain()
    done = {e["endpoint_id"] for e in h.of("endpoint_finished")}
    assert done == {f"r{i}" for i in range(10) if i != 8}


def test_a_receiver_waits_past_its_call_wait_until_its_callers_deadline(hosts):
    """wait_until (its caller went out late) keeps a receiver registered past call_wait_s:
    a call coming after call_wait_s is answered, and without a call it then ends."""
    rh, ch = hosts(), hosts()
    for eid in ("r", "idle-r"):
        start_ep(rh, eid, "receiver", 2.0, call_wait_s=1.5)
    ready = {
        eid: rh.wait_for(
            lambda e, eid=eid: e["ev"] == "endpoint_ready" and e["endpoint_id"] == eid, 10
        )
        for eid in ("r", "idle-r")
    }
    until = time.time() + 6.0
    for eid in ("r", "idle-r"):
        rh.send({"op": "wait_until", "endpoint_id": eid, "until_t": until})
    time.sleep(3.0)  # past call_wait_s: without wait_until both would have ended
    assert not rh.of("endpoint_finished")
    start_ep(ch, "c", "caller", 2.0, ready["r"]["contact_uri"])
    assert ch.wait_for(finished("c"), 20)["outcome"] == "SUCCESS"
    assert rh.wait_for(finished("r"), 10)["outcome"] == "SUCCESS"
    idle = rh.wait_for(finished("idle-r"), 10)
    assert idle["outcome"] == "NO_INCOMING_CALL" and "caller" in idle["reason"], idle
    assert until <= idle["t"] <= until + 2.0, idle["t"] - until
