"""Does a worker notice it is overloaded, and only then? (issue 14, section 3)

One platform (embedded NATS + PostgreSQL, one worker with the default overload
limits), two runs of G.711 calls between two groups on that worker, in this order:

  over   --legs call legs (default 840: on the first 2-core machine 420 legs, 1.5 times
         the ~280 legs PJSUA2.md measured, were past its capacity; on a faster one of
         the same size they were not, and of 840 legs only ~600 got their call up
         within 60 s). Target:
         GeneratorOverloaded within 10 s of it carrying more legs in call than the
         calm run, or of its first call being up if it never carries that many
         (before any call is up its hosts are starting: no media result exists yet to
         distrust). Stopped once flagged; its endpoints per phase are printed every 2 s.
  third  a third of those legs for --calm-s seconds (default 120). Target: no flag.

Prints, for each, the legs, when the load was on, when (if) the worker flagged it,
its reason and figures. The machine is shared: its load average is printed too,
since other processes' CPU starves the hosts' media clocks as much as our own.

    python bench/overload.py [--legs 840] [--calm-s 120] [--health-log FILE]

To choose limits from evidence, record every second's figures without flagging:
set each CALLMETER_OVERLOAD_* limit to 0 and CALLMETER_OVERLOAD_SUSTAIN_S very high,
and keep the worker's "health:" lines with --health-log (bench/health_seconds.py
tabulates them per run phase).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_load(
    platform: Any,
    legs: int,
    duration_s: float,
    stop_when_flagged: bool,
    beyond: int,
    buildup_s: float = 0.0,
) -> dict:
    """One run of `legs` legs; when it first had `beyond` legs in call (load_on), when
    (if) its worker flagged it. Stopped once flagged when asked (the machine is shared)."""
    n = max(1, legs // 2)
    run_id = platform.run_test(
        {
            "name": f"overload-{legs}",
            "duration_s": duration_s,
            "buildup_s": buildup_s,
            "groups": [
                {"name": "A", "endpoints": n, "codecs": ["PCMU"], "calls": "B"},
                {"name": "B", "endpoints": n, "codecs": ["PCMU"]},
            ],
        }
    )
    load_on: float | None = None
    first_call: float | None = None  # the first endpoint in call: media from here on
    timeline: list[tuple[float, dict[str, int]]] = []  # (time, endpoints per phase)
    flagged: dict | None = None
    peak_in_call = 0
    stopped = False
    deadline = time.monotonic() + duration_s + 300
    run: dict = {}
    while time.monotonic() < deadline:
        _, run = platform.request("GET", f"/api/v1/runs/{run_id}")
        in_call = sum(1 for e in run.get("endpoints", []) if e.get("phase") == "INCALL")
        peak_in_call = max(peak_in_call, in_call)
        timeline.append(
            (time.time(), dict(Counter(e.get("phase") for e in run.get("endpoints", []))))
        )
        if first_call is None and in_call:
            first_call = time.time()
        if load_on is None and in_call >= beyond:
            load_on = time.time()
        flagged = run.get("generator_overloaded") or flagged
        if flagged and stop_when_flagged and not stopped and run["status"] == "RUNNING":
            platform.request("POST", f"/api/v1/runs/{run_id}/stop")
            stopped = True
        if run["status"] in ("COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"):
            break
        time.sleep(0.5)
    return {
        "run_id": run_id,
        "status": run.get("status"),
        "legs": legs,
        "peak_in_call": peak_in_call,
        "load_on": load_on,
        "first_call": first_call,
        "timeline": timeline,
        "started": when(run["started_at"]) if run.get("started_at") else None,
        "flag": flagged,
        "reason": run.get("reason") or "",
    }


def settle(platform: Any, timeout: float = 180.0) -> None:
    """Until the worker is online with every slot free (the previous run wound down)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = platform.request("GET", "/api/v1/workers")
        online = [w for w in body["items"] if w["status"] == "ONLINE"]
        if online and all(w["free_slots"] == w["capacity"] for w in online):
            return
        time.sleep(1)
    raise TimeoutError("the worker did not come back idle")


def describe(name: str, r: dict) -> str:
    flag, start = r["flag"], r["started"] or 0.0
    on = f"load on at +{r['load_on'] - start:.1f} s" if r["load_on"] else "load never on"
    if r["first_call"]:
        on += f", first call up at +{r['first_call'] - start:.1f} s"
    line = (
        f"{name:5s} {r['legs']:4d} legs (peak {r['peak_in_call']} in call), {on},"
        f" run {r['status']} ({r['reason'][:160]})"
    )
    if not flag:
        return line + ": not flagged"
    at = when(flag["at"])
    after = f"{at - r['load_on']:+.1f} s after the load was on" if r["load_on"] else ""
    figures = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in flag["figures"].items()
    )
    return f"{line}: FLAGGED at +{at - start:.1f} s {after}: {flag['reason']} [{figures}]"


def mark(name: str, r: dict) -> str:
    """A line for health_seconds.py: when the run started and when its calls were up."""
    iso = {
        k: datetime.fromtimestamp(r[k]).isoformat() if r[k] else "-"
        for k in ("started", "first_call", "load_on")
    }
    return f"# run {name} legs={r['legs']} " + " ".join(f"{k}={v}" for k, v in iso.items())


def timeline(r: dict, every_s: float = 2.0) -> str:
    """Endpoints per phase every `every_s` seconds of the run, from its start."""
    start, shown, lines = r["started"] or 0.0, -every_s, []
    for t, phases in r["timeline"]:
        if t - start >= shown + every_s:
            shown = t - start
            lines.append(
                f"  +{shown:5.1f} s  "
                + ", ".join(f"{k}={v}" for k, v in sorted(phases.items(), key=str))
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--legs", type=int, default=840)
    ap.add_argument("--calm-s", type=float, default=120.0)
    ap.add_argument("--buildup-s", type=float, default=0.0, help="both runs' buildup")
    ap.add_argument("--health-log", type=Path, help="keep the worker's health lines here")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the platform on a kill too
    from callmeter_common.servers import start_nats, start_postgres
    from tests.support.platform import TestPlatform

    work = Path(tempfile.mkdtemp(prefix="callmeter-bench-"))
    nats, pg = start_nats(work / "nats"), start_postgres(work / "pg")
    platform = TestPlatform(work / "platform", nats.url, pg.url)
    platform.extra_env["CALLMETER_CAPACITY"] = "4000"
    third = max(2, (args.legs // 3) // 2 * 2)
    over: dict = {}
    calm: dict = {}
    try:
        platform.start_services()
        platform.wait_for_api()
        platform.wait_workers(1)
        load0 = os.getloadavg()[0]
        # "on": more legs in call than the calm run carries (its full load for the calm run)
        over = run_load(platform, args.legs, 60.0, True, beyond=third + 1, buildup_s=args.buildup_s)
        print(describe("over", over), f"(load average before: {load0:.1f})", flush=True)
        print(timeline(over), flush=True)
        settle(platform)
        load1 = os.getloadavg()[0]
        calm = run_load(
            platform, third, args.calm_s, False, beyond=third * 9 // 10, buildup_s=args.buildup_s
        )
        print(describe("third", calm), f"(load average before: {load1:.1f})", flush=True)
    finally:
        log = platform.data_dir / "worker.log"
        lines = log.read_text().splitlines() if log.exists() else []
        health = [ln for ln in lines if "health:" in ln or "overloaded during" in ln]
        print(f"worker health lines ({len(health)}), the first 15:", *health[:15], sep="\n  ")
        if args.health_log:
            marks = [mark(name, r) for name, r in (("over", over), ("third", calm)) if r]
            args.health_log.write_text("\n".join(marks + health) + "\n")
        platform.stop()
        nats.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    # flagged within 10 s of carrying more than the calm load, or of its first call being
    # up when it never got that far (before its first call there is no media result to
    # distrust: its hosts are starting, a burst the worker does not judge as overload)
    since = over["load_on"] or over["first_call"]
    flagged_in = when(over["flag"]["at"]) - since if over["flag"] and since else None
    over_ok = flagged_in is not None and flagged_in <= 10.0
    # "no flag" only counts when the calm load was really on (its calls up)
    calm_ok = calm["flag"] is None and calm["load_on"] is not None
    print(
        f"over ({args.legs} legs): {'flagged' if over['flag'] else 'NOT flagged'}"
        + (
            f" {flagged_in:+.1f} s after "
            + ("it carried more than the calm load" if over["load_on"] else "its first call was up")
            if flagged_in is not None
            else ""
        )
        + f" (target: within 10 s) {'ok' if over_ok else 'FAIL'};"
        f" third ({third} legs, {args.calm_s:.0f} s): "
        + ("FLAGGED" if calm["flag"] else "no flag" if calm["load_on"] else "load never on")
        + f" (target: no flag with its calls up) {'ok' if calm_ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
