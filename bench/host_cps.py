"""The INVITE rate one endpoint host survives: calls set up per second through one
pjsua2 process, sending and taking them, with media, call after call.

Two real endpoint hosts (`python -m callmeter_worker.host`, the platform's own
program): 4 receivers in one, 4 callers in the other with the `repeat` pattern (no
pause), so each host sets up (caller host) or takes (receiver host) about
4 / (hold + setup) calls per second. The hold shrinks step by step; a step passes
when both hosts are alive at the end and every call was answered and ended SUCCESS
(each call's record, reported by the host). Prints the rate per host of every step and
the highest that passed: testdef.HOST_INVITES_PER_S must stay well under it (the
platform budgets it for a host that also carries media for 4 calls and shares the
machine with the rest of a worker).

    python bench/host_cps.py [--holds 1,0.5,0.25,0.1,0.05,0.02] [--duration 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_host_calls import HostProc, start_ep  # noqa: E402

CALLS = 4  # endpoints per host (PJSUA_MAX_CALLS)


def step(hold_s: float, duration: float) -> tuple[bool, float, str]:
    """(passed, calls per second per host, what went wrong)."""
    recv, call = HostProc(), HostProc()
    try:
        pattern = {"kind": "repeat", "hold_s": hold_s, "pause_s": 0.0}
        uris = []
        for i in range(CALLS):
            start_ep(recv, f"r{i}", "receiver", duration, call_wait_s=duration + 3, pattern=pattern)
            ready = recv.wait_for(
                lambda e, i=i: e["ev"] == "endpoint_ready" and e["endpoint_id"] == f"r{i}", 10
            )
            uris.append(ready["contact_uri"])
        t0 = time.monotonic()
        for i in range(CALLS):
            start_ep(call, f"c{i}", "caller", duration, uris[i], pattern=pattern)
        deadline = t0 + duration + 40
        pending = {(call, f"c{i}") for i in range(CALLS)} | {(recv, f"r{i}") for i in range(CALLS)}
        while pending and time.monotonic() < deadline:
            for host, eid in list(pending):
                if host.proc.poll() is not None:
                    return False, 0.0, f"host exited with {host.proc.returncode}"
                if host.of("endpoint_finished", eid):
                    pending.discard((host, eid))
                else:
                    try:
                        host.pump(0.05)
                    except AssertionError as exc:
                        return False, 0.0, str(exc)
        if pending:
            return False, 0.0, f"{len(pending)} endpoints did not finish"
        records = call.of("call_record")
        first = min(r["attempted_t"] for r in records)
        last = max(r["attempted_t"] for r in records)
        rate = (len(records) - 1) / (last - first) if last > first else 0.0
        bad = [r for r in records if r["outcome"] != "SUCCESS"]
        bad += [f for f in recv.of("endpoint_finished") if f["outcome"] != "SUCCESS"]
        if bad:
            return False, rate, f"{len(bad)} of {len(records)} calls failed: {bad[0]}"
        return True, rate, ""
    finally:
        for host in (recv, call):
            host.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holds", default="1,0.5,0.25,0.1,0.05,0.02")
    ap.add_argument("--duration", type=float, default=10.0)
    args = ap.parse_args()
    best = 0.0
    for hold in (float(h) for h in args.holds.split(",")):
        ok, rate, why = step(hold, args.duration)
        print(f"hold {hold:5.2f} s: {rate:6.1f} calls/s per host  {'ok' if ok else 'FAIL ' + why}")
        if ok:
            best = max(best, rate)
    print(f"highest rate a host sustained with every call answered: {best:.1f} calls/s")


if __name__ == "__main__":
    main()
