"""How long does "Stop" take for a 200-endpoint run? (The product promises <= 30 s.)

Starts its own NATS, PostgreSQL and services, two workers, runs 100 callers against
100 receivers (real pjsua2, 50 endpoint hosts), waits until the calls are up, presses
Stop and times STOPPING -> COMPLETED.

    python bench/stop200.py [--endpoints 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from callmeter_common.servers import start_nats, start_postgres
from callmeter_storage.migrations import migrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.platform import TestPlatform  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--buildup", type=float, default=20.0)
    args = ap.parse_args()
    half = args.endpoints // 2
    base = Path(tempfile.mkdtemp(prefix="callmeter-stop200-"))
    nats, pg = start_nats(base / "nats"), start_postgres(base / "pg")
    migrate(pg.url)
    p = TestPlatform(base / "platform", nats.url, pg.url)
    try:
        p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
        per_worker = str(-(-args.endpoints // args.workers))
        for i in range(1, args.workers + 1):
            p.start_worker(f"bench{i}", CALLMETER_CAPACITY=per_worker)
        p.wait_for_api()
        p.wait_workers(args.workers, timeout=60)
        run_id = p.run_test(
            {
                "name": "stop200",
                "duration_s": 600,
                "buildup_s": args.buildup,
                "groups": [
                    {"name": "A", "endpoints": half, "calls": "B"},
                    {"name": "B", "endpoints": args.endpoints - half},
                ],
            }
        )
        t0 = time.monotonic()
        in_call = 0
        while time.monotonic() - t0 < args.buildup + 90:
            run = p.request("GET", f"/api/v1/runs/{run_id}")[1]
            in_call = run["phase_counts"]["INCALL"]
            if in_call >= args.endpoints or run["status"] not in ("PENDING", "QUEUED", "RUNNING"):
                break
            time.sleep(1)
        print(
            f"{in_call} of {args.endpoints} endpoints in call after {time.monotonic() - t0:.0f} s"
        )
        time.sleep(3)  # a few seconds of media before the stop
        t_stop = time.monotonic()
        p.request("POST", f"/api/v1/runs/{run_id}/stop")
        run = p.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=180)
        took = time.monotonic() - t_stop
        print(
            f"stop -> {run['status']} (stopped={run['stopped']}) in {took:.1f} s"
            f"  [target <= 30 s: {'OK' if took <= 30 else 'MISSED'}]"
        )
        print(f"outcomes: {run['outcome_counts']}  samples kept: {run['summary'].get('samples')}")
    finally:
        _stop(p)
        nats.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True) if not os.environ.get("KEEP") else print(base)


def _stop(p: TestPlatform) -> None:
    for proc in p.procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in p.procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
