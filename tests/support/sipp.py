"""SIPp (Debian `sip-tester`) as a real peer for tests, plus a raw garbage sender.

Each SIPp runs in its own process group on free ports with -nostdin (no
terminal needed) and is killed with its group at teardown.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from callmeter_common.procs import spawn, stop_group

_REJECT = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer every INVITE with {code}">
  <recv request="INVITE" />
  <send><![CDATA[
SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 {code} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag{code}[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:sipp@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <recv request="ACK" />
</scenario>
"""
REASONS = {486: "Busy Here", 503: "Service Unavailable", 404: "Not Found", 603: "Decline"}


_HANDED_OUT: set[int] = set()  # ports given to SIPps of this process: never twice


def free_udp_port() -> int:
    """A free UDP port no earlier call returned (the kernel may hand a closed one out
    again at once, and two SIPps on one port answer nothing: a caller then sees 408)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def udp_bound(port: int) -> bool:
    """Whether some socket is bound to UDP `port` (on any address), per /proc/net/udp."""
    with open("/proc/net/udp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return any(int(row[1].rsplit(":", 1)[1], 16) == port for row in rows if len(row) > 1)


def _require_sipp() -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed (Debian package: sip-tester)")


class Sipp:
    """One SIPp process; `port` is its SIP port, `media_port` its RTP (echo) port."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        _require_sipp()
        self.port, self.media_port = free_udp_port(), free_udp_port()
        self.log = workdir / f"sipp-{name}.log"
        argv = [
            "sipp",
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mp",
            str(self.media_port),
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(workdir / f"sipp-{name}-errors.log"),
            *args,
        ]
        self.proc: subprocess.Popen[bytes] = spawn(argv, self.log, cwd=str(workdir))
        self._wait_listening(10.0)

    def _wait_listening(self, timeout: float) -> None:
        """Until SIPp has bound its SIP port: a peer that failed to start says so here,
        with its log, rather than as a caller's 408 later."""
        deadline = time.monotonic() + timeout
        while not udp_bound(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"SIPp did not listen on UDP {self.port}: {tail}")
            time.sleep(0.05)

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait(self, timeout: float) -> int:
        """SIPp's exit code (0: every call succeeded)."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        stop_group(self.proc, timeout=3)


def uas_echo(workdir: Path) -> Sipp:
    """Answers every INVITE 180/200 and echoes the RTP it receives back to the sender."""
    return Sipp(workdir, "uas", ["-sn", "uas", "-rtp_echo"])


def uas_reject(workdir: Path, code: int) -> Sipp:
    """Answers every INVITE 100 then `code` (486, 503, ...)."""
    path = workdir / f"reject-{code}.xml"
    path.write_text(_REJECT.format(code=code, reason=REASONS.get(code, "Rejected")))
    return Sipp(workdir, f"uas{code}", ["-sf", str(path)])


def uac_call(workdir: Path, target: str, user: str, hold_ms: int) -> Sipp:
    """One call to user@target, held `hold_ms`, RTP echoed back to the callee."""
    return Sipp(
        workdir,
        "uac",
        [
            target,
            "-sn",
            "uac",
            "-s",
            user,
            "-m",
            "1",
            "-d",
            str(hold_ms),
            "-rtp_echo",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
    )


def send_garbage(host: str, port: int, rounds: int = 3) -> int:
    """Raw junk and truncated SIP at a receiver's SIP port; returns datagrams sent.

    Paced (PJSUA2.md: a burst of many distinct INVITEs can exhaust a host's
    ioqueue by itself; the point here is malformed input, not a flood).
    """
    junk = [
        b"\x00\xff" * 300,
        b"INVITE sip:x@" + host.encode(),  # cut off inside the request line
        b"INVITE sip:r@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nContent-Le",
        b"SIP/2.0 200 OK\r\nCSeq: 1\r\n\r\n",  # response without Via/Call-ID
        b"REGISTER sip:x SIP/2.0\r\nContent-Length: 999999\r\n\r\nabc",
        b"\r\n\r\n",
        bytes(range(256)) * 4,
    ]
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(rounds):
            for packet in junk:
                s.sendto(packet, (host, port))
                sent += 1
                time.sleep(0.02)
    return sent
