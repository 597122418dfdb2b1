"""How many concurrent G.711 call legs one worker sustains, against bare pjsua2.

For each size N on the ladder (legs = endpoints; N/2 calls), in the same run:
  bare      N/8 caller + N/8 receiver processes of a minimal pjsua2 script (4 calls
            each, tone source, VAD off, 1 Hz getStreamStat) - no NATS, no platform
  platform  the whole platform (embedded NATS + Postgres, one worker) running a
            test with N/2 callers -> N/2 receivers; samples counted in Postgres
Both sides start their calls with the same stagger: call k of n starts
buildup * k / n seconds after the first (the platform's buildup_s does the same
per group). A size passes when every leg's median received rate is >= 49 pkt/s
(stable 50) and, for the platform, < 1 % of the expected per-second samples are
missing. The ladder grows by --factor from --start until both sides have failed
(a side that failed is not run at larger sizes), up to --max. Prints the largest
passing N of each, in legs per core too, the ratio platform/bare of those, the
largest size both pass, and RSS per leg.

    python bench/worker_capacity.py [--start 16] [--factor 1.5] [--max 1024]
                                    [--duration 10] [--buildup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE = r"""
import json, sys, time, pjsua2 as pj
role, port, rtp, targets, dur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
delays = [float(d) for d in sys.argv[6].split(",")] if len(sys.argv) > 6 and sys.argv[6] else []
ep = pj.Endpoint(); ep.libCreate(); c = pj.EpConfig()
c.uaConfig.threadCnt = 0; c.uaConfig.mainThreadOnly = True; c.medConfig.noVad = True
c.logConfig.level = c.logConfig.consoleLevel = 0
ep.libInit(c); t = pj.TransportConfig(); t.port = port; t.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, t); ep.libStart(); ep.audDevManager().setNullDev()
import wave, math, struct, tempfile
f = tempfile.mktemp(suffix=".wav"); w = wave.open(f, "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(struct.pack("<8000h", *(int(9000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(8000)))); w.close()
player = pj.AudioMediaPlayer(); player.createPlayer(f, 0); play = ep.audDevManager().getPlaybackDevMedia()
calls = []
class Call(pj.Call):
    def onCallMediaState(self, prm):
        for mi in self.getInfo().media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                am = self.getAudioMedia(mi.index); player.startTransmit(am); am.startTransmit(play)
class Acc(pj.Account):
    def onIncomingCall(self, prm):
        call = Call(self, prm.callId); calls.append(call); p = pj.CallOpParam(); p.statusCode = 200; call.answer(p)
a = pj.AccountConfig(); a.idUri = f"sip:u@127.0.0.1:{port}"
a.mediaConfig.transportConfig.port = rtp; a.mediaConfig.transportConfig.portRange = 20
acc = Acc(); acc.create(a)
print("ready", flush=True)
start = time.monotonic(); pending = list(zip(delays, targets.split(","))) if role == "caller" else []
rates = {}; last = {}; end = start + max(delays, default=0) + dur + (0 if role == "caller" else 5); nxt = start + 1
while time.monotonic() < end:
    while pending and time.monotonic() - start >= pending[0][0]:  # the stagger, as the platform's
        call = Call(acc); call.makeCall(pending.pop(0)[1], pj.CallOpParam(True)); calls.append(call)
    ep.libHandleEvents(10)
    if time.monotonic() >= nxt:
        nxt += 1
        for i, call in enumerate(calls):
            try: pkt = call.getStreamStat(0).rtcp.rxStat.pkt
            except pj.Error: continue
            if i in last: rates.setdefault(i, []).append(pkt - last[i])
            last[i] = pkt
print(json.dumps({str(i): r for i, r in rates.items()}), flush=True)
for call in calls:
    try: call.hangup(pj.CallOpParam())
    except pj.Error: pass
for _ in range(50): ep.libHandleEvents(10)
import os; os._exit(0)  # a measuring script needs no orderly libDestroy (it aborts on stray Calls)
"""


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def host_pids() -> list[int]:
    """Endpoint-host processes of this benchmark's platform (they carry our module name)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"callmeter_worker.host" in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def run_bare(legs: int, duration: float, buildup: float) -> tuple[bool, float, float]:
    """(passed, worst median rate, RSS kB per leg) for legs/2 bare calls, call k of n
    started buildup * k / n seconds after the first."""
    from callmeter_common.procs import free_port

    pairs, procs = max(1, legs // 8), []
    base, calls = 30_000, max(1, legs // 8) * 4
    for p in range(pairs):
        rport, cport = free_port(kind=2), free_port(kind=2)
        recv = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BARE,
                "receiver",
                str(rport),
                str(base + 100 * p),
                "",
                str(duration),
                str(buildup),  # it stays up until its last call has ended
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        recv.stdout.readline()
        targets = ",".join(f"sip:u@127.0.0.1:{rport}" for _ in range(4))
        delays = ",".join(f"{buildup * (4 * p + k) / calls:.3f}" for k in range(4))
        call = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BARE,
                "caller",
                str(cport),
                str(base + 100 * p + 50),
                targets,
                str(duration),
                delays,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs += [recv, call]
    time.sleep(buildup + duration / 2)  # every call up
    mem = rss_kb([p.pid for p in procs])
    medians = []
    for proc in procs:
        out, _ = proc.communicate(timeout=buildup + duration + 60)
        if proc.args[3] != "caller":
            continue  # receivers outlive their calls; callers measure exactly the call time
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        for rates in json.loads(lines[-1]).values() if lines else []:
            medians.append(statistics.median(rates[1:-1] or rates))
    worst = min(medians) if len(medians) == pairs * 4 else 0.0
    return worst >= 49, worst, mem / (pairs * 8)


def run_platform(platform, database_url: str, legs: int, duration: float, buildup: float):  # type: ignore[no-untyped-def]
    import psycopg

    n = max(1, legs // 2)
    run_id = platform.run_test(
        {
            "name": f"capacity-{legs}",
            "duration_s": duration,
            "buildup_s": buildup,
            "groups": [{"name": "A", "endpoints": n, "calls": "B"}, {"name": "B", "endpoints": n}],
        }
    )
    deadline, mem = time.monotonic() + buildup + duration + 120, 0
    while time.monotonic() < deadline:
        _, run = platform.request("GET", f"/api/v1/runs/{run_id}")
        if sum(1 for e in run.get("endpoints", []) if e.get("phase") == "INCALL") >= legs * 0.9:
            mem = max(mem, rss_kb(host_pids()))
        if run["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.5)
    time.sleep(2)  # ingest batches
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT endpoint_id, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY"
            " packet_rate_ps), max(seq) + 1 FROM metric_samples WHERE run_id = %s"
            " AND direction = 'recv' GROUP BY endpoint_id",
            (run_id,),
        ).fetchall()
    samples = sum(r[1] for r in rows)
    # sample loss = gaps in each endpoint's sequence numbers (0, 1, 2, ...), plus
    # endpoints that stored nothing at all (counted as a full call's worth)
    expected = sum(r[3] for r in rows) + (legs - len(rows)) * int(duration)
    missing = max(0.0, 1 - samples / expected)
    worst = min((r[2] or 0 for r in rows), default=0.0) if len(rows) == legs else 0.0
    # A size only counts when (nearly) all its legs were in call at the same time:
    # otherwise the calls ran one after another and the load was never reached.
    concurrent = mem > 0
    ok = run["status"] == "COMPLETED" and concurrent and missing < 0.01 and worst >= 49
    return ok, worst, missing, mem / legs


def ladder(start: int, factor: float, top: int) -> list[int]:
    """Sizes from `start`, each `factor` times the last, in whole groups of 8 legs."""
    sizes = [start]
    while sizes[-1] < top:
        sizes.append(min(top, max(sizes[-1] + 8, round(sizes[-1] * factor / 8) * 8)))
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=int, default=16)
    ap.add_argument("--factor", type=float, default=1.5)
    ap.add_argument("--max", type=int, default=1024)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--buildup", type=float, default=5.0)
    args = ap.parse_args()
    from callmeter_common.servers import start_nats, start_postgres
    from tests.support.platform import TestPlatform

    work = Path(tempfile.mkdtemp(prefix="callmeter-bench-"))
    nats, pg = start_nats(work / "nats"), start_postgres(work / "pg")
    os.environ["CALLMETER_CAPACITY"] = "2000"
    platform = TestPlatform(work / "platform", nats.url, pg.url)
    platform.env["CALLMETER_CAPACITY"] = "2000"
    best = {"bare": (0, 0.0), "platform": (0, 0.0)}
    failed: set[str] = set()
    both = 0  # the largest size both pass
    try:
        platform.start_services()
        platform.wait_for_api()
        platform.wait_workers(1)
        for legs in ladder(args.start, args.factor, args.max):
            passed = set()
            if "bare" not in failed:
                ok, rate, mem = run_bare(legs, args.duration, args.buildup)
                print(
                    f"bare     {legs:4d} legs: {'ok  ' if ok else 'FAIL'} worst median"
                    f" {rate:5.1f} pkt/s, {mem / 1024:5.1f} MB/leg",
                    flush=True,
                )
                if ok:
                    best["bare"], passed = (legs, mem), passed | {"bare"}
            if "platform" not in failed:
                ok, rate, missing, mem = run_platform(
                    platform, pg.url, legs, args.duration, args.buildup
                )
                print(
                    f"platform {legs:4d} legs: {'ok  ' if ok else 'FAIL'} worst median"
                    f" {rate:5.1f} pkt/s, {100 * missing:4.1f} % samples missing,"
                    f" {mem / 1024:5.1f} MB/leg (hosts)",
                    flush=True,
                )
                if ok:
                    best["platform"], passed = (legs, mem), passed | {"platform"}
            failed |= {"bare", "platform"} - passed
            if passed == {"bare", "platform"}:
                both = legs
            if failed == {"bare", "platform"}:
                break
        else:
            print(f"(stopped at --max {args.max} before both failed)")
    finally:
        platform.stop()
        nats.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    bare, plat, cores = best["bare"][0], best["platform"][0], os.cpu_count() or 1
    ratio = plat / bare if bare else float("nan")
    print(
        f"largest passing size: bare {bare} legs ({bare / cores:.0f} per core),"
        f" platform {plat} legs ({plat / cores:.0f} per core), {cores} cores;"
        f" ratio platform/bare {ratio:.2f} (target >= 0.8); largest size both pass: {both};"
        f" RSS per leg: bare {best['bare'][1] / 1024:.1f} MB,"
        f" platform hosts {best['platform'][1] / 1024:.1f} MB"
    )


if __name__ == "__main__":
    main()
