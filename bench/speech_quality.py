"""What PESQ scoring costs, next to what the scored call itself costs, and why it runs in
the supervisor rather than the endpoint host.

    python bench/speech_quality.py [--seconds 8]

1. Baseline: one real G.711 call between two endpoint-host processes playing the
   speech reference, the receiver recording --seconds of it; CPU of both hosts (psutil).
2. Scoring that recording (resample, align, P.862) in this process: CPU seconds.
3. What a host would pay at start-up to score itself: importing numpy + pesq
   (CPU and resident memory of a fresh interpreter, against a bare one).
Printed as ratios to the call's CPU; the figures depend on the machine, the ratios less.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from callmeter_common import wav
from callmeter_worker.supervisor.scorer import score_files
from callmeter_worker.supervisor.speech import at_rate


def host(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callmeter_worker.host", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def send(p: subprocess.Popen[bytes], **cmd: object) -> None:
    assert p.stdin is not None
    p.stdin.write(json.dumps(cmd).encode() + b"\n")
    p.stdin.flush()


def wait_for(p: subprocess.Popen[bytes], ev: str, eid: str | None = None) -> dict:
    assert p.stdout is not None
    for line in p.stdout:
        msg = json.loads(line)
        if msg["ev"] == ev and (eid is None or msg.get("endpoint_id") == eid):
            return msg
    raise RuntimeError(f"host ended before {ev}")


def one_call(tmp: Path, seconds: float) -> tuple[float, dict, str]:
    pcm, rate = wav.read_pcm(wav.BUILTIN["speech-en"])
    ref = str(tmp / "ref-8k.wav")
    wav.write_pcm(ref, at_rate(pcm, rate, 8000), 8000)
    rh = host(
        "--sip-port",
        "35060",
        "--rtp-port",
        "36000",
        "--rtp-port-range",
        "40",
        "--record-dir",
        str(tmp),
    )
    ch = host(
        "--sip-port", "35062", "--rtp-port", "36100", "--rtp-port-range", "40", "--audio", ref
    )
    try:
        wait_for(rh, "host_ready")
        wait_for(ch, "host_ready")
        cpu0 = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in (rh, ch))
        base = {"codecs": ["PCMU"], "duration_s": seconds + 2}
        send(
            rh,
            op="start_endpoint",
            endpoint_id="r",
            role="receiver",
            username="r",
            record_s=seconds,
            **base,
        )
        uri = wait_for(rh, "endpoint_ready")["contact_uri"]
        send(
            ch,
            op="start_endpoint",
            endpoint_id="c",
            role="caller",
            username="c",
            target_uri=uri,
            **base,
        )
        rec = wait_for(rh, "recording")
        wait_for(rh, "endpoint_finished", "r")
        cpu = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in (rh, ch)) - cpu0
    finally:
        for p in (rh, ch):
            p.kill()
            p.wait()
    return cpu, rec, ref


def import_cost(code: str) -> tuple[float, float]:
    """CPU seconds and RSS (MB) of a fresh interpreter that runs `code`."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport resource, psutil\n"
            "u = resource.getrusage(resource.RUSAGE_SELF)\n"  # (ru_maxrss survives exec: no)
            "print(u.ru_utime + u.ru_stime, psutil.Process().memory_info().rss / 2**20)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        call_cpu, rec, ref = one_call(Path(d), a.seconds)
        t0 = time.process_time()
        result = score_files(ref, rec["path"], rec["codec"])
        score_cpu = time.process_time() - t0
    bare_cpu, bare_rss = import_cost("pass")
    np_cpu, np_rss = import_cost("import numpy, pesq")
    print(
        f"call: {a.seconds + 2:g} s G.711, both hosts' CPU {call_cpu:.3f} s; "
        f"recorded {rec['seconds']} s, MOS-LQO {result['mos_lqo']}"
    )
    print(f"scoring one recording: {score_cpu:.3f} s CPU = {score_cpu / call_cpu:.2f}x the call")
    print(
        f"  (per host process the scorer would block the pjsua loop ~{score_cpu * 1000:.0f} ms:"
        f" {score_cpu / 0.02:.0f} frame periods of 20 ms)"
    )
    print(
        f"numpy+pesq import: {np_cpu - bare_cpu:.3f} s CPU "
        f"({(np_cpu - bare_cpu) / call_cpu:.2f}x the call), "
        f"+{np_rss - bare_rss:.1f} MB RSS per process that imports them"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
