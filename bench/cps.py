"""Calls per second with media through a real Kamailio: the platform against SIPp.

One Kamailio (infra/kamailio, registrar + record-routing proxy) on this machine; at
each rate R of the ladder, in the same run and on the same footing:
  platform  a test with a `rate` group (R calls/s for --duration s, --hold s fixed
            holds) of registered pjsua2 callers calling registered receivers through
            Kamailio (G.711 both ways, real RTP); counted from the run's call records
  sipp      SIPp's UAC (PCMA played from SIPp's g711a.pcap) calling SIPp's UAS
            (-rtp_echo) through the same Kamailio at -r R, the same number of calls
            (-m), the same hold (-d) and cap on open calls (-l); counted from SIPp's
            own statistics file. The UAS answers 200 at once, without a 180:
            Kamailio's two UDP workers can pass a 180 after the 200, and SIPp's
            UAC then aborts a call that pjsua2 would carry on with
A rate is sustained when at least 99.9 % of the planned calls (R x duration) were
answered and, for SIPp, it kept the pace (its calls were all placed within the
duration plus a second). Each side climbs the ladder until it fails; prints the
highest rate each sustains and platform / SIPp (target >= 0.5).

    python bench/cps.py [--ladder 2,4,8,16,32,64,128] [--duration 10] [--hold 2]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.kamailio import Kamailio, accounts  # noqa: E402
from tests.support.sipp import free_udp_port  # noqa: E402

PCAP = Path("/usr/share/sip-tester/g711a.pcap")  # Debian sip-tester: 8 s of PCMA
PASS = 0.999
HOST_BUDGET = 10.0  # testdef.HOST_INVITES_PER_S: the platform refuses a denser group

UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAC with PCMA from a pcap, through a record-routing proxy">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[local_ip_type] [local_ip]
t=0 0
m=audio [auto_media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
[routes]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
[routes]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""

UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS answering PCMA behind a record-routing proxy">
  <recv request="INVITE"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


def planned(rate: float, duration: float) -> int:
    """Arrivals k = 0, 1, ... at k / rate before `duration` (the platform's plan)."""
    return math.ceil(rate * duration)


def endpoints_for(rate: float, hold: float) -> int:
    """Callers (= receivers) for a rate: one call each at a time with room for setup
    and teardown, and no more than the host budget per 4-endpoint host."""
    need = max(math.ceil(rate * (hold + 1.5)), math.ceil(rate * 4 / HOST_BUDGET), 4)
    return 4 * math.ceil(need / 4)


def run_platform(platform, kamailio: Kamailio, rate: float, duration: float, hold: float):  # type: ignore[no-untyped-def]
    n = endpoints_for(rate, hold)
    reg = kamailio.registrar() | {"expires_s": 300}

    def group(name: str, **extra: object) -> dict:
        users = accounts(name.lower(), n)
        return {
            "name": name,
            "endpoints": n,
            "registrar": reg,
            "accounts": [{"username": u, "password": p} for u, p in users.items()],
            **extra,
        }

    definition = {
        "name": f"cps {rate:g}",
        "duration_s": duration,
        "speech_quality_calls": 0,
        "groups": [
            group("A", calls="B", pattern={"kind": "rate", "cps": rate, "hold_s": hold}),
            group("B"),
        ],
    }
    run_id = platform.run_test(definition)
    run = platform.wait_status(
        run_id, {"COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"}, timeout=duration * 3 + 180
    )
    if run["status"] == "CANNOT_RUN_FOR_NOW":
        raise RuntimeError(f"the platform refused the run: {run.get('reason')}")
    summary, last, stable_since = {}, -1, time.monotonic()
    while time.monotonic() - stable_since < 3:  # records stored by metrics-ingest
        _, summary = platform.request("GET", f"/api/v1/runs/{run_id}/calls/summary")
        if summary["attempts"] != last:
            last, stable_since = summary["attempts"], time.monotonic()
        time.sleep(0.5)
    want = planned(rate, duration)
    ok = summary["answered"] >= PASS * want
    if not ok:  # why: the callers' outcomes, and when the failed calls came
        why = Counter(f"{e['outcome']} {e.get('reason') or ''}"[:120] for e in run["endpoints"])
        print(f"  platform run {run_id} {run['status']}: {dict(why.most_common())}")
        base = f"/api/v1/runs/{run_id}/calls?limit="
        _, head = platform.request("GET", base + "1")
        _, failed_page = platform.request("GET", base + "1000&status=failed")
        if head["calls"] and failed_page["calls"]:
            first = datetime.fromisoformat(head["calls"][0]["attempted_at"])
            failed = [
                (c["sip_code"], (datetime.fromisoformat(c["attempted_at"]) - first).total_seconds())
                for c in failed_page["calls"]
            ]
            codes = Counter(code for code, _ in failed)
            at = sorted(round(t, 1) for _, t in failed)
            print(f"  failed calls by SIP code {dict(codes)}, at s after the first: {at[:20]}")
    return ok, summary["attempts"], summary["answered"], want


def run_sipp(work: Path, kamailio: Kamailio, rate: float, duration: float, hold: float):  # type: ignore[no-untyped-def]
    want, limit = planned(rate, duration), endpoints_for(rate, hold)
    step = work / f"sipp-{rate:g}"
    step.mkdir()
    (step / "uac.xml").write_text(UAC.replace("{pcap}", str(PCAP)))
    (step / "uas.xml").write_text(UAS)
    uas_port, uas_media = free_udp_port(), free_udp_port()
    common = ["-i", "127.0.0.1", "-nostdin"]
    uas = subprocess.Popen(
        [
            "sipp",
            *common,
            "-p",
            str(uas_port),
            "-mp",
            str(uas_media),
            "-sf",
            "uas.xml",
            "-rtp_echo",
            "-trace_err",
        ],
        cwd=step,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        status = kamailio.register_contact("sippuas", f"sip:sippuas@127.0.0.1:{uas_port}")
        assert " 200 " in status, status
        t0 = time.monotonic()
        uac = subprocess.run(
            [
                "sipp",
                f"{kamailio.host}:{kamailio.port}",
                *common,
                "-p",
                str(free_udp_port()),
                "-mp",
                str(free_udp_port()),
                "-sf",
                "uac.xml",
                "-s",
                "sippuas",
                "-r",
                f"{rate:g}",
                "-rp",
                "1000",
                "-m",
                str(want),
                "-l",
                str(limit),
                "-d",
                str(int(hold * 1000)),
                "-trace_stat",
                "-stf",
                "stat.csv",
                "-fd",
                "1",
                "-timeout",
                f"{int(duration + hold + 60)}s",
                "-trace_err",
            ],
            cwd=step,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - t0
    finally:
        os.killpg(uas.pid, 9)
        uas.wait()
    rows = (step / "stat.csv").read_text().strip().splitlines()
    head, last = rows[0].split(";"), rows[-1].split(";")
    stat = dict(zip(head, last, strict=False))
    ok_calls = int(stat["SuccessfulCall(C)"])
    attempted = int(stat["OutgoingCall(C)"])
    # placing `want` calls at R/s takes `duration`; each then holds `hold` s
    kept_pace = elapsed <= duration + hold + 3.0
    passed = ok_calls >= PASS * want and kept_pace and uac.returncode in (0, 1)
    return passed, attempted, ok_calls, want, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ladder", default="2,4,8,16,32,64,128")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--hold", type=float, default=2.0)
    args = ap.parse_args()
    if shutil.which("sipp") is None or shutil.which("kamailio") is None or not PCAP.exists():
        sys.exit("needs sipp (Debian sip-tester, with its g711a.pcap) and kamailio")
    from callmeter_common.servers import start_nats, start_postgres
    from tests.support.platform import TestPlatform

    ladder = [float(x) for x in args.ladder.split(",")]
    top = endpoints_for(max(ladder), args.hold)
    work = Path(tempfile.mkdtemp(prefix="callmeter-cps-"))
    users = accounts("a", top) | accounts("b", top) | {"sippuas": "pw-sippuas"}
    kamailio = Kamailio(work / "kamailio", users)
    kamailio.start()
    nats, pg = start_nats(work / "nats"), start_postgres(work / "pg")
    platform = TestPlatform(work / "platform", nats.url, pg.url)
    os.environ["CALLMETER_CAPACITY"] = "4000"
    platform.env["CALLMETER_CAPACITY"] = "4000"
    best = {"platform": 0.0, "sipp": 0.0}
    alive = {"platform": True, "sipp": True}
    try:
        platform.start_services()
        platform.wait_for_api()
        platform.wait_workers(1)
        for rate in ladder:
            if alive["platform"]:
                ok, attempted, answered, want = run_platform(
                    platform, kamailio, rate, args.duration, args.hold
                )
                print(
                    f"platform {rate:6g} calls/s: {'ok  ' if ok else 'FAIL'} {answered}/{want}"
                    f" answered ({attempted} attempted)",
                    flush=True,
                )
                alive["platform"] = ok
                if ok:
                    best["platform"] = rate
            if alive["sipp"]:
                ok, attempted, answered, want, took = run_sipp(
                    work, kamailio, rate, args.duration, args.hold
                )
                print(
                    f"sipp     {rate:6g} calls/s: {'ok  ' if ok else 'FAIL'} {answered}/{want}"
                    f" answered ({attempted} attempted, {took:.1f} s)",
                    flush=True,
                )
                alive["sipp"] = ok
                if ok:
                    best["sipp"] = rate
            if not any(alive.values()):
                break
    finally:
        platform.stop()
        nats.stop()
        pg.stop()
        kamailio.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = best["platform"] / best["sipp"] if best["sipp"] else float("nan")
    still = [k for k, v in alive.items() if v]
    print(
        f"highest sustained rate (>= {PASS:.1%} answered, {args.hold:g} s holds, media):"
        f" platform {best['platform']:g} calls/s, SIPp {best['sipp']:g} calls/s;"
        f" platform / SIPp {ratio:.2f} (target >= 0.5)"
        + (f"; still passing at the top of the ladder: {', '.join(still)}" if still else "")
    )


if __name__ == "__main__":
    main()
