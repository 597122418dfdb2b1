"""Calls per second with media through a real Kamailio: the platform against SIPp.

One Kamailio (infra/kamailio, registrar + record-routing proxy) on this machine; at
each rate R of the ladder, in the same run and on the same footing:
  platform  a test with a `rate` group (R calls/s for --duration s, --hold s fixed
            holds) of registered pjsua2 callers calling registered receivers through
            Kamailio (G.711 both ways, real RTP); counted from the run's call records
  platform>sipp  the same callers (PCMA) calling SIPp's UAS below at its Kamailio AOR
            `sippuas`, no platform receivers: the far end a user's SBC or PBX would be;
            counted from the call records and cross-checked with the UAS's own count
  sipp      SIPp's UAC (PCMA played from SIPp's g711a.pcap) calling SIPp's UAS
            (-rtp_echo) through the same Kamailio at -r R, the same number of calls
            (-m), the same hold (-d) and cap on open calls (-l); counted from SIPp's
            own statistics file. The UAS answers 200 at once, without a 180:
            Kamailio's two UDP workers can pass a 180 after the 200, and SIPp's
            UAC then aborts a call that pjsua2 would carry on with
A rate is sustained when at least 99.9 % of the planned calls (R x duration) were
answered and the side kept the pace: SIPp's run took at most the duration plus the hold
plus 3 s, the platform's calls were attempted within the duration plus 3 s (a caller
whose host started late shifts its calls later: all answered, but not at the rate). Each side climbs the ladder on its own until it fails: by
default the rate doubles from --start until both sides have failed or --max is passed
(the bound is printed; a side still passing there is said to be). Prints the highest
rate each sustains and platform / SIPp (target >= 0.5) for each comparison: pair
against pair (`platform` against `sipp`) and generator against generator, both calling
the same SIPp UAS (`platform>sipp` against `sipp`: SIPp's side is the same run in both).
--far-end platform|sipp|both (default both) picks the platform's far end(s).

    python bench/cps.py [--start 2] [--max 1024] [--duration 10] [--hold 2]
    python bench/cps.py --ladder 32,48,64 --sipp off    # given rates, one side only
    python bench/cps.py --far-end sipp    # generator comparison only
    python bench/cps.py ... --logs DIR    # keep the platform's service logs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.kamailio import Kamailio, accounts  # noqa: E402
from tests.support.sipp import free_udp_port, udp_bound  # noqa: E402

PCAP = Path("/usr/share/sip-tester/g711a.pcap")  # Debian sip-tester: 8 s of PCMA
PASS = 0.999
HOST_BUDGET = 10.0  # testdef.HOST_INVITES_PER_S: the platform refuses a denser group
# a side keeps the pace when its calls are all placed within the duration plus this
# (SIPp: its whole run, the last hold included; the platform: first to last attempt)
PACE_SLACK_S = 3.0
CAPACITY = 4000  # endpoints the bench's one worker offers (CALLMETER_CAPACITY)
# An endpoint carries one call at a time, so its calls come (hold + TURN_S) apart: this
# covers one call's setup and teardown (setup p90 48 ms at 64 calls/s). Endpoints are
# also the cap on open calls SIPp gets (-l). Each four take an endpoint host, whose own
# PJSIP threads cost about 1.2 % of a core even idle (measured): with 1.5 s the bench
# ran 17 % more hosts than with 1.0 for the same rate, and in one run of each failed
# 72 calls/s where 1.0 passed it.
TURN_S = 1.0
SIPP_COMMON = ["-i", "127.0.0.1", "-nostdin"]

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


def load() -> str:
    """The machine's load averages (1, 5, 15 min), printed beside each figure."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time (all cores) spent busy over `seconds`."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def settle(most_s: float) -> str:
    """Wait, up to `most_s`, until the machine is less than half busy over a second, so
    that no step starts inside the tail of the one before (the same for every side);
    says how busy it was when the step started."""
    t0 = time.monotonic()
    while (busy := cpu_busy()) >= 0.5 and time.monotonic() - t0 < most_s:
        pass
    return f"cpu {busy:.0%} busy at the start (settled {time.monotonic() - t0:.0f} s)"


def planned(rate: float, duration: float) -> int:
    """Arrivals k = 0, 1, ... at k / rate before `duration` (the platform's plan)."""
    return math.ceil(rate * duration)


def endpoints_for(rate: float, hold: float) -> int:
    """Callers (= receivers) for a rate: one call each at a time with room for setup
    and teardown, and no more than the host budget per 4-endpoint host."""
    need = max(math.ceil(rate * (hold + TURN_S)), math.ceil(rate * 4 / HOST_BUDGET), 4)
    return 4 * math.ceil(need / 4)


def run_platform(  # type: ignore[no-untyped-def]
    platform, kamailio: Kamailio, rate: float, duration: float, hold: float, far_end: str
):
    """One rate of the platform's callers: against its own receivers (`far_end`
    "platform", G.711 PCMU both ways) or against SIPp's UAS at its Kamailio AOR ("sipp",
    PCMA as SIPp's UAC offers, no receivers)."""
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
    if far_end == "sipp":
        definition["groups"] = [
            group(
                "A",
                target_uri=kamailio.aor("sippuas"),
                codecs=["PCMA"],
                pattern={"kind": "rate", "cps": rate, "hold_s": hold},
            )
        ]
    run_id = platform.run_test(definition)
    run = platform.wait_status(
        run_id,
        {"COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"},
        timeout=duration * 3 + 180,
        every_s=2.0,  # SIPp's side is not watched while it runs; ours barely
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
    # the pace, on SIPp's footing (its calls all placed within the duration plus slack)
    base = f"/api/v1/runs/{run_id}/calls?limit=1"
    _, first = platform.request("GET", base)
    _, last = platform.request("GET", f"{base}&offset={max(0, summary['attempts'] - 1)}")
    span = float("nan")
    if first["calls"] and last["calls"]:
        span = (
            datetime.fromisoformat(last["calls"][0]["attempted_at"])
            - datetime.fromisoformat(first["calls"][0]["attempted_at"])
        ).total_seconds()
    kept_pace = span <= duration + PACE_SLACK_S
    print(
        f"  platform {far_end} {rate:g} calls/s: calls attempted over {span:.1f} s;"
        f" {calls_seen(call_records(platform, run_id))}",
        flush=True,
    )
    ok = summary["answered"] >= PASS * want and kept_pace
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
        timeline(platform, run_id)
        _, workers = platform.request("GET", "/api/v1/workers")
        for w in workers["items"]:
            print(f"  worker {w['worker_id']}: {w['status']}, last seen {w['last_seen']}")
        heartbeats(platform.nats_url)
        for log in sorted(platform.data_dir.glob("*.log")):  # why a worker was taken for lost
            lines = log.read_text(errors="replace").splitlines()
            said = [x for x in lines if "lost" in x.lower() or "silent" in x.lower()]
            for line in said[:5]:
                print(f"  {log.name}: {line[:200]}")
            lag = [x for x in lines if "health:" in x]  # the worker's own slow seconds
            for line in lag[:3] + (["  ..."] if len(lag) > 6 else []) + lag[max(3, len(lag) - 3) :]:
                print(f"  {log.name}: {line[:240]}")
    return ok, summary["attempts"], summary["answered"], want


def call_records(platform, run_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every call record of a run, in attempt order."""
    calls: list[dict] = []
    while True:
        _, page = platform.request(
            "GET", f"/api/v1/runs/{run_id}/calls?limit=1000&offset={len(calls)}"
        )
        calls += page["calls"]
        if len(page["calls"]) < 1000:
            return calls


def spread(xs: list[float], unit: str = "") -> str:
    """n, min, p50, p90, max of a list of figures."""
    xs = sorted(xs)
    if not xs:
        return "none"
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return (
        f"n={len(xs)} min {xs[0]:.1f}{unit} p50 {pick(0.5):.1f}{unit}"
        f" p90 {pick(0.9):.1f}{unit} max {xs[-1]:.1f}{unit}"
    )


def calls_seen(calls: list[dict]) -> str:
    """What the records say beyond counts: whether the answered calls carried media
    (received RTP measured, its mean loss), their setup times, and why the others failed."""
    answered = [c for c in calls if c["answered_at"] is not None]
    measured = [c["recv_loss_pct"] for c in answered if c["recv_loss_pct"] is not None]
    mean = sum(measured) / len(measured) if measured else float("nan")
    setup = [c["call_setup_ms"] for c in answered if c["call_setup_ms"] is not None]
    said = (
        f"received RTP measured on {len(measured)}/{len(answered)} answered, mean loss"
        f" {mean:.2f} %; setup {spread(setup, ' ms')}"
    )
    failed = Counter(
        f"{c['outcome']} {c['reason']}"[:240] for c in calls if c["answered_at"] is None
    )
    return said + "".join(f"\n    {n} x {why}" for why, n in failed.most_common(5))


def heartbeats(nats_url: str, worst: int = 6) -> None:
    """Whether a worker taken for lost was late itself or only heard late: each
    heartbeat's own time (stamped when the worker made it) against when JetStream
    stored it, the longest gaps between beats, and when the dispatcher lost it."""
    import asyncio

    import nats
    from nats.js import api

    from callmeter_events import WORKERS
    from callmeter_events.codec import decode

    async def read() -> list[tuple[float, float, dict]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        last = (await js.stream_info(WORKERS.name)).state.last_seq
        sub = await js.subscribe(
            "callmeter.worker.>", ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
        )
        got: list[tuple[float, float, dict]] = []
        while True:
            msg = await sub.next_msg(timeout=5)
            event = decode(msg.data).model_dump(mode="json")
            made = datetime.fromisoformat(event["occurred_at"]).timestamp()
            got.append((made, msg.metadata.timestamp.timestamp(), event))
            if msg.metadata.sequence.stream >= last:
                break
        await nc.close()
        return got

    got = asyncio.run(read())
    beats = [(m, s, e) for m, s, e in got if e["type"] == "WorkerHeartbeat"]
    gaps = sorted(
        ((b[0] - a[0], a, b) for a, b in zip(beats, beats[1:], strict=False)),
        key=lambda g: -g[0],
    )
    for gap, a, b in gaps[:worst]:
        print(
            f"  heartbeat gap {gap:.1f} s: seq {a[2]['seq']} made {a[0] % 1000:.1f}"
            f" stored +{a[1] - a[0]:.2f} s -> seq {b[2]['seq']} made {b[0] % 1000:.1f}"
            f" stored +{b[1] - b[0]:.2f} s ({b[2]['hosts']} hosts)"
        )
    late = sorted(beats, key=lambda b: b[0] - b[1])[:worst]
    print(f"  heartbeats stored latest after made: {[round(s - m, 2) for m, s, _ in late]}")
    for made, stored, e in got:
        if e["type"] == "WorkerLost":
            print(f"  WorkerLost made {made % 1000:.1f} stored {stored % 1000:.1f}: {e['reason']}")


def run_events(platform, run_id: str, types: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The run's events of these types, from its event stream (not followed)."""
    req = urllib.request.Request(
        f"{platform.base}/api/v1/runs/{run_id}/events?follow=false&type={types}",
        headers=platform._auth(),
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        lines = resp.read().decode().splitlines()
    return [json.loads(line[5:]) for line in lines if line.startswith("data:")]


def timeline(platform, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """Where a failing run lost its calls: how long hosts took to be ready, when each
    side was ready against the calls' plan, and what the receivers that got no call saw."""
    events = run_events(
        platform,
        run_id,
        "RunStarted,EndpointAssigned,EndpointRegistered,EndpointFinished,"
        "ReceiverWaitExtended,CallRecorded",
    )
    at = lambda e: datetime.fromisoformat(e["occurred_at"]).timestamp()  # noqa: E731
    t0 = min(at(e) for e in events if e["type"] == "RunStarted")
    assigned, ready, finished, first_call, extended = {}, {}, {}, {}, {}
    for e in events:
        ep = e.get("endpoint_id")
        if e["type"] == "EndpointAssigned":
            assigned[ep] = at(e) - t0
        elif e["type"] == "EndpointRegistered":
            ready.setdefault(ep, at(e) - t0)
        elif e["type"] == "EndpointFinished":
            finished[ep] = (at(e) - t0, e["outcome"], e.get("reason", ""))
        elif e["type"] == "ReceiverWaitExtended":
            extended[ep] = datetime.fromisoformat(e["wait_until"]).timestamp() - t0
        elif e["type"] == "CallRecorded" and e["seq"] == 1:
            first_call[ep] = datetime.fromisoformat(e["attempted_at"]).timestamp() - t0

    for role in sorted({ep.split("-")[0] for ep in assigned}, reverse=True):
        eps = [ep for ep in assigned if ep.startswith(role + "-")]
        print(f"  {role}: assigned at {spread([assigned[ep] for ep in eps])} s after RunStarted")
        print(f"  {role}: ready    at {spread([ready[ep] for ep in eps if ep in ready])}")
        print(
            f"  {role}: assigned->ready {spread([ready[ep] - assigned[ep] for ep in eps if ep in ready])}"
        )
    print(f"  A: first call at {spread(list(first_call.values()))}")
    idle = [ep for ep, f in finished.items() if f[1] == "NO_INCOMING_CALL"]
    print(
        f"  {len(idle)} receivers ended NO_INCOMING_CALL at {spread([finished[ep][0] for ep in idle])}"
    )
    for ep in sorted(idle, key=lambda x: int(x.split("-")[1]))[:8]:
        caller = "A-" + ep.split("-")[1]
        print(
            f"    {ep}: ready {ready.get(ep, float('nan')):.1f}, extended to"
            f" {extended.get(ep, float('nan')):.1f}, ended {finished[ep][0]:.1f};"
            f" {caller} assigned {assigned.get(caller, float('nan')):.1f},"
            f" ready {ready.get(caller, float('nan')):.1f},"
            f" first call {first_call.get(caller, float('nan')):.1f},"
            f" {finished.get(caller, (0, '?', ''))[1]} {finished.get(caller, (0, '?', ''))[2][:60]}"
        )


def sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp statistics file (-trace_stat), by column."""
    rows = path.read_text().strip().splitlines()
    return dict(zip(rows[0].split(";"), rows[-1].split(";"), strict=False))


class FarEndDown(Exception):
    """SIPp's UAS did not start: the bench's fault, so no side's result (not caught)."""


def start_uas(step: Path) -> tuple[subprocess.Popen[bytes], int]:
    """SIPp's UAS, once it listens on its SIP port; a UAS that exits or never listens
    is an error naming its stderr, not a step SIPp failed."""
    uas_port, uas_media = free_udp_port(), free_udp_port()
    with (step / "uas.stderr").open("wb") as err:
        uas = subprocess.Popen(
            [
                "sipp",
                *SIPP_COMMON,
                "-p",
                str(uas_port),
                "-mp",
                str(uas_media),
                "-sf",
                "uas.xml",
                "-rtp_echo",
                "-trace_stat",
                "-stf",
                "uas.csv",
                "-fd",
                "1",
                "-trace_err",
            ],
            cwd=step,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10.0
    while not udp_bound(uas_port):
        if uas.poll() is not None or time.monotonic() > deadline:
            if uas.poll() is None:
                os.killpg(uas.pid, signal.SIGKILL)
                uas.wait()
            said = (step / "uas.stderr").read_text(errors="replace").strip()[-300:]
            raise FarEndDown(f"SIPp's UAS did not listen on UDP {uas_port}: {said}")
        time.sleep(0.05)
    return uas, uas_port


@contextmanager
def sipp_uas(step: Path, kamailio: Kamailio) -> Iterator[dict[str, str]]:
    """SIPp's UAS (-rtp_echo, 200 at once) registered in Kamailio as `sippuas`: the far
    end of SIPp's UAC, and of the platform's callers in the generator comparison. Once
    the block ends it is stopped (SIGTERM: it writes a last row) and the dict holds its
    own statistics: how many calls it took and completed, a count by other eyes."""
    step.mkdir()
    (step / "uas.xml").write_text(UAS)
    uas, uas_port = start_uas(step)
    contact = f"sip:sippuas@127.0.0.1:{uas_port}"
    stats: dict[str, str] = {}
    try:
        status = kamailio.register_contact("sippuas", contact)
        assert " 200 " in status, status
        yield stats
    finally:
        # Its binding goes with it. Each step's UAS stayed registered for an hour, and
        # Kamailio forks an INVITE to every contact of the AOR (registrar's
        # append_branches): after a dozen steps it relayed no call at all. Measured
        # with SIPp alone at 144 calls/s: 1440 of 1440 answered with no stale binding
        # and with 6, 0 of 1440 with 12 (a ladder's 8th rate, both sides registering).
        kamailio.register_contact("sippuas", contact, expires_s=0)
        os.killpg(uas.pid, signal.SIGTERM)
        try:
            uas.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(uas.pid, signal.SIGKILL)
            uas.wait()
    stats.update(sipp_stats(step / "uas.csv"))


def far_end_said(uas: dict[str, str]) -> str:
    """What SIPp's UAS counted: calls it took (INVITEs) and completed (200, ACK, BYE)."""
    return (
        f"SIPp UAS's own count: {uas.get('SuccessfulCall(C)', '?')} completed of"
        f" {uas.get('IncomingCall(C)', '?')} taken"
    )


def run_sipp(work: Path, kamailio: Kamailio, rate: float, duration: float, hold: float):  # type: ignore[no-untyped-def]
    want, limit = planned(rate, duration), endpoints_for(rate, hold)
    step = work / f"sipp-{rate:g}"
    with sipp_uas(step, kamailio) as uas:
        (step / "uac.xml").write_text(UAC.replace("{pcap}", str(PCAP)))
        t0 = time.monotonic()
        uac = subprocess.run(
            [
                "sipp",
                f"{kamailio.host}:{kamailio.port}",
                *SIPP_COMMON,
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
    stat = sipp_stats(step / "stat.csv")
    ok_calls = int(stat["SuccessfulCall(C)"])
    attempted = int(stat["OutgoingCall(C)"])
    # placing `want` calls at R/s takes `duration`; each then holds `hold` s
    kept_pace = elapsed <= duration + hold + PACE_SLACK_S
    passed = ok_calls >= PASS * want and kept_pace and uac.returncode in (0, 1)
    return passed, attempted, ok_calls, want, elapsed, uas


def doubling(start: float, top: float) -> list[float]:
    """start, 2 x start, ... up to and including top."""
    rates = [start]
    while rates[-1] * 2 <= top:
        rates.append(rates[-1] * 2)
    return rates


def run_platform_to_sipp(  # type: ignore[no-untyped-def]
    work: Path, platform, kamailio: Kamailio, rate: float, duration: float, hold: float
):
    """The generator comparison's platform side: its callers calling SIPp's UAS, which
    counts what it took."""
    with sipp_uas(work / f"platform-sipp-{rate:g}", kamailio) as uas:
        result = run_platform(platform, kamailio, rate, duration, hold, "sipp")
    return (*result, uas)


# the comparisons: a platform side against SIPp's UAC -> UAS run (the same run for both:
# SIPp's UAC calls SIPp's UAS in each)
COMPARISONS = {
    "platform": "pair against pair: platform callers -> platform receivers, SIPp UAC -> SIPp UAS",
    "platform>sipp": "generator against generator, the same far end (SIPp UAS):"
    " platform callers -> SIPp UAS, SIPp UAC -> SIPp UAS",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ladder", help="comma-separated rates instead of doubling")
    ap.add_argument("--start", type=float, default=2.0, help="first rate of the doubling")
    ap.add_argument("--max", type=float, default=1024.0, help="upper bound of the doubling")
    ap.add_argument("--platform", choices=("on", "off"), default="on")
    ap.add_argument(
        "--far-end",
        choices=("platform", "sipp", "both"),
        default="both",
        help="whom the platform's callers call: its own receivers (pair against pair),"
        " SIPp's UAS (generator against generator), or both",
    )
    ap.add_argument("--sipp", choices=("on", "off"), default="on")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--hold", type=float, default=2.0)
    ap.add_argument("--logs", help="copy the platform's service logs to this directory")
    ap.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="before each step, wait up to this many s for the CPU to be under half busy",
    )
    args = ap.parse_args()
    if shutil.which("sipp") is None or shutil.which("kamailio") is None or not PCAP.exists():
        sys.exit("needs sipp (Debian sip-tester, with its g711a.pcap) and kamailio")
    from callmeter_common.servers import start_nats, start_postgres
    from tests.support.platform import TestPlatform

    if args.ladder:
        ladder = [float(x) for x in args.ladder.split(",")]
    else:
        ladder = doubling(args.start, args.max)
    sides = []
    if args.platform == "on":
        far_ends = ("platform", "sipp") if args.far_end == "both" else (args.far_end,)
        sides += ["platform" if far == "platform" else "platform>sipp" for far in far_ends]
    sides += ["sipp"] if args.sipp == "on" else []
    print(
        f"ladder (each side until it fails): {', '.join(f'{r:g}' for r in ladder)} calls/s;"
        f" upper bound {max(ladder):g}; sides: {', '.join(sides)}; load {load()}",
        flush=True,
    )
    # accounts for the platform's largest run it may reach (it refuses beyond capacity)
    top = endpoints_for(min(max(ladder), CAPACITY / 2 / (args.hold + TURN_S)), args.hold)
    top = top if args.platform == "on" else 0
    work = Path(tempfile.mkdtemp(prefix="callmeter-cps-"))
    users = accounts("a", top) | accounts("b", top) | {"sippuas": "pw-sippuas"}
    kamailio = Kamailio(work / "kamailio", users)
    kamailio.start()
    nats, pg = start_nats(work / "nats"), start_postgres(work / "pg")
    platform = TestPlatform(work / "platform", nats.url, pg.url)
    os.environ["CALLMETER_CAPACITY"] = str(CAPACITY)
    platform.env["CALLMETER_CAPACITY"] = str(CAPACITY)
    best = dict.fromkeys(sides, 0.0)
    alive = dict.fromkeys(sides, True)
    try:
        if args.platform == "on":
            platform.start_services()
            platform.wait_for_api()
            platform.wait_workers(1)
        for rate in ladder:
            for side in sides:
                if not alive[side]:
                    continue
                settled = settle(args.settle)
                before = load()
                if side == "sipp":
                    ok, attempted, answered, want, took, uas = run_sipp(
                        work, kamailio, rate, args.duration, args.hold
                    )
                    said = (
                        f"{answered}/{want} answered ({attempted} attempted, {took:.1f} s);"
                        f" {far_end_said(uas)}"
                    )
                else:
                    try:
                        if side == "platform":
                            ok, attempted, answered, want = run_platform(
                                platform, kamailio, rate, args.duration, args.hold, "platform"
                            )
                            said = f"{answered}/{want} answered ({attempted} attempted)"
                        else:
                            ok, attempted, answered, want, uas = run_platform_to_sipp(
                                work, platform, kamailio, rate, args.duration, args.hold
                            )
                            said = (
                                f"{answered}/{want} answered ({attempted} attempted);"
                                f" {far_end_said(uas)}"
                            )
                    except RuntimeError as exc:  # refused: beyond the worker's capacity
                        ok, said = False, str(exc)
                print(
                    f"{side:13} {rate:6g} calls/s: {'ok  ' if ok else 'FAIL'} {said};"
                    f" load {before} -> {load()}; {settled}",
                    flush=True,
                )
                alive[side] = ok
                if ok:
                    best[side] = rate
            if not any(alive.values()):
                break
    finally:
        platform.stop()
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            for log in platform.data_dir.glob("*.log"):
                shutil.copy(log, args.logs)
        nats.stop()
        pg.stop()
        kamailio.stop()
        shutil.rmtree(work, ignore_errors=True)
    still = [k for k, v in alive.items() if v]
    print(
        f"highest sustained rate (>= {PASS:.1%} answered, {args.hold:g} s holds, media): "
        + "; ".join(f"{side} {best[side]:g} calls/s" for side in sides)
        + (f"; still passing at the bound {max(ladder):g}: {', '.join(still)}" if still else "")
        + f"; load {load()}"
    )
    for side in sides[:-1] if "sipp" in sides else []:
        ratio = best[side] / best["sipp"] if best["sipp"] else float("nan")
        print(
            f"{COMPARISONS[side]}: platform {best[side]:g} calls/s, SIPp {best['sipp']:g}"
            f" calls/s; platform / SIPp {ratio:.2f} (target >= 0.5)"
        )


if __name__ == "__main__":
    main()
