"""tshark (Debian `tshark`) as an independent observer of a run's RTP, for tests.

`capture(...)` runs dumpcap on loopback with a capture filter for the given UDP
port ranges (its own process group, stopped at the end); `rtp_streams(pcap)` is
tshark's own analysis (`-z rtp,streams`) of every RTP stream in the file.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from callmeter_common.procs import spawn, stop_group


def require_tshark() -> None:
    if shutil.which("tshark") is None or shutil.which("dumpcap") is None:
        pytest.skip("tshark not installed (Debian package: tshark)")


@contextmanager
def capture(pcap: Path, port_ranges: list[tuple[int, int]]) -> Iterator[Path]:
    """Capture UDP on `lo` for the port ranges into `pcap` while the block runs."""
    require_tshark()
    flt = " or ".join(f"portrange {a}-{b}" for a, b in port_ranges)
    log = pcap.with_suffix(".log")
    proc = spawn(["dumpcap", "-q", "-i", "lo", "-f", f"udp and ({flt})", "-w", str(pcap)], log)
    deadline = time.monotonic() + 10
    while "File:" not in (log.read_text() if log.exists() else ""):  # capturing now
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dumpcap did not start: {log.read_text()[-500:]}")
        time.sleep(0.05)
    try:
        yield pcap
    finally:
        time.sleep(0.3)  # the last packets reach the file
        stop_group(proc)


@dataclass(frozen=True)
class RtpStream:
    src_port: int
    dst_port: int
    ssrc: str
    packets: int
    lost: int
    mean_jitter_ms: float
    max_jitter_ms: float


def rtp_streams(pcap: Path, rtp_ports: Iterable[int] = ()) -> list[RtpStream]:
    """tshark's RTP stream analysis of the capture: RTP found by its UDP heuristic, and
    decoded as RTP on `rtp_ports` whatever else tshark knows them as (a port another
    protocol owns is never tried by the heuristic: CI drew 26000, Quake's, and tshark
    saw no RTP stream there)."""
    decode = [arg for port in rtp_ports for arg in ("-d", f"udp.port=={port},rtp")]
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-q", "--enable-heuristic", "rtp_udp", *decode]
        + ["-z", "rtp,streams"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    streams = []
    for line in out.splitlines():
        # [Start End] SrcIP SrcPort DstIP DstPort SSRC Payload Pkts Lost (p%) Min/Mean/Max
        # Delta, Min/Mean/Max Jitter [X]
        cols = line.split()
        at = next((k for k, c in enumerate(cols) if c.startswith("0x") and k >= 3), None)
        if at is None:
            continue
        i = next(k for k in range(at + 2, len(cols)) if cols[k].isdigit())  # Pkts
        nums = [c for c in cols[i + 2 :] if not c.startswith("(") and c != "X"]
        streams.append(
            RtpStream(
                src_port=int(cols[at - 3]),
                dst_port=int(cols[at - 1]),
                ssrc=cols[at],
                packets=int(cols[i]),
                lost=int(cols[i + 1]),
                mean_jitter_ms=float(nums[4]),
                max_jitter_ms=float(nums[5]),
            )
        )
    return streams
