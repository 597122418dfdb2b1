"""The control plane at fleet scale: simulated workers, the real services, one big run.

Starts its own NATS, PostgreSQL and services (scheduler, dispatcher, 2 metrics-ingest,
API), then `--workers` simulated workers (`callmeter worker --simulate`'s pool) spread
over `--processes` processes, and runs one test of `--endpoints` endpoints (half call
the other half) for `--duration` s: one sample per endpoint per direction per second.
Prints:
  RunCreated -> every endpoint assigned (s)
  ingest lag p50/p99: now - newest stored sample second, read every second, and the
    metrics-ingest consumer's backlog at the start and end of the live window
  run page (HTML) and endpoint list (JSON, first 100) latency p50/max while live
  Stop -> COMPLETED (s)
  RSS and CPU of each service, NATS, PostgreSQL and the fleet
Targets: no growing backlog and lag p99 < 2 s, run page < 300 ms, stop < 30 s.
No real calls are placed: these are control-plane figures, never media results.

    python bench/fleet.py [--endpoints 10000] [--workers 50] [--processes 5] [--duration 120]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from callmeter_common.procs import spawn
from callmeter_common.servers import start_nats, start_postgres
from callmeter_storage.migrations import migrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.platform import TestPlatform  # noqa: E402


def serve_fleet(first: int, count: int, capacity: int) -> None:
    """`count` simulated workers in this process (fleet-<first>...), until SIGTERM."""
    from callmeter_common.runtime import setup_logging
    from callmeter_worker.supervisor.main import serve
    from callmeter_worker.supervisor.settings import WorkerSettings

    setup_logging("fleet")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        workers = [
            WorkerSettings(worker_id=f"fleet-{i}", simulate=True, capacity=capacity)
            for i in range(first, first + count)
        ]
        await asyncio.gather(*(serve(stop, w) for w in workers))

    asyncio.run(main())


VIEWS = 10  # sequential views whose API CPU is measured


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Usage:
    """CPU seconds and RSS of named process trees, sampled over a window."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.start = {name: self._cpu(pid) for name, pid in roots.items()}
        self.t0 = time.monotonic()
        self.peak_rss = dict.fromkeys(roots, 0)

    @staticmethod
    def _tree(pid: int) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        return []

    def cpu_of(self, pid: int) -> float:
        """CPU seconds (user + system) of the process tree so far."""
        return self._cpu(pid)

    def _cpu(self, pid: int) -> float:
        total = 0.0
        for proc in self._tree(pid):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def sample_rss(self) -> None:
        for name, pid in self.roots.items():
            rss = 0
            for proc in self._tree(pid):
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak_rss[name] = max(self.peak_rss[name], rss)

    def report(self) -> None:
        elapsed = time.monotonic() - self.t0
        for name, pid in self.roots.items():
            cpu = (self._cpu(pid) - self.start[name]) / elapsed
            print(
                f"  {name:18s} CPU {100 * cpu:6.1f} %   peak RSS {self.peak_rss[name] / 2**20:7.1f} MiB"
            )


async def backlog(nats_url: str) -> int:
    from callmeter_common.bus import Bus

    bus = await Bus.connect(nats_url, "bench-fleet")
    try:
        info = await bus.js.consumer_info("CALLMETER_METRICS", "metrics-ingest")
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    finally:
        await bus.close()


def timed_get(p: TestPlatform, path: str, html: bool) -> float:
    t = time.monotonic()
    status, _ = p.get_html(path) if html else p.request("GET", path)
    assert status == 200, (path, status)
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoints", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--duration", type=int, default=120, help="run length (s)")
    ap.add_argument(
        "--live", type=int, default=0, help="seconds measured live (default: duration - 20)"
    )
    ap.add_argument(
        "--serve", nargs=3, type=int, metavar=("FIRST", "COUNT", "CAPACITY"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.serve:
        serve_fleet(*args.serve)
        return
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout` or kill: still clean up below
    live_s = args.live or max(10, args.duration - 20)
    capacity = -(-args.endpoints // args.workers) + 10
    base = Path(tempfile.mkdtemp(prefix="callmeter-fleet-"))
    nats, pg = start_nats(base / "nats"), start_postgres(base / "pg")
    migrate(pg.url)
    p = TestPlatform(base / "platform", nats.url, pg.url)
    # The scheduler's installation limits (2,000 per run, 5,000 at once) are policy,
    # not capacity: raised here to what is measured.
    p.extra_env |= {
        "CALLMETER_MAX_ENDPOINTS_PER_RUN": str(args.endpoints),
        "CALLMETER_MAX_CONCURRENT_ENDPOINTS": str(args.endpoints),
    }
    fleet: list[subprocess.Popen[bytes]] = []
    try:
        p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
        per_proc = -(-args.workers // args.processes)
        for first in range(1, args.workers + 1, per_proc):
            count = min(per_proc, args.workers - first + 1)
            argv = [sys.executable, __file__, "--serve", str(first), str(count), str(capacity)]
            fleet.append(spawn(argv, base / f"fleet-{first}.log", env=p.env))
        p.wait_for_api()
        p.wait_workers(args.workers, timeout=120)
        half = args.endpoints // 2
        roots = {name: proc.pid for name, proc in p.procs.items()}
        roots |= {f"fleet-process-{i}": proc.pid for i, proc in enumerate(fleet, start=1)}
        roots["nats-server"] = nats.proc.pid
        roots["postgres"] = pg.proc.pid
        usage = Usage(roots)
        t_created = time.monotonic()
        run_id = start_run(
            p,
            {
                "name": "fleet",
                "duration_s": args.duration,
                "buildup_s": 0,
                "groups": [
                    {"name": "A", "endpoints": half, "calls": "B"},
                    {"name": "B", "endpoints": args.endpoints - half},
                ],
            },
        )
        assigned_s = wait_assigned(pg.url, run_id, args.endpoints, t_created)
        print(
            f"{args.endpoints} endpoints on {args.workers} simulated workers"
            f" ({len(fleet)} processes), {args.duration} s run"
        )
        print(f"RunCreated -> all endpoints assigned: {assigned_s:.1f} s")
        lags, pages, lists, backlogs = [], [], [], []
        tick = 0
        t_live = time.monotonic()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            while time.monotonic() - t_live < live_s:
                row = conn.execute(
                    "SELECT extract(epoch FROM now() - max(time)) FROM metric_samples"
                    " WHERE run_id = %s AND time > now() - interval '60 s'",
                    (run_id,),
                ).fetchone()
                if row and row[0] is not None:
                    lags.append(float(row[0]))
                backlogs.append(asyncio.run(backlog(nats.url)))
                tick += 1
                if tick % 5 == 1:
                    pages.append(timed_get(p, f"/runs/{run_id}", html=True))
                    lists.append(timed_get(p, f"/api/v1/runs/{run_id}/endpoints?limit=100", False))
                usage.sample_rss()
                time.sleep(max(0.0, 1 - (time.monotonic() - t_live) % 1))
        third = max(1, len(backlogs) // 3)
        early, late = statistics.mean(backlogs[:third]), statistics.mean(backlogs[-third:])
        # The newest stored second is up to 1 s old by construction (samples are per second).
        print(
            f"ingest lag (now - newest stored sample second): p50 {pct(lags, 0.5):.2f} s,"
            f" p99 {pct(lags, 0.99):.2f} s   [target p99 < 2 s]"
        )
        print(
            f"ingest backlog (messages): first third {early:.0f}, last third {late:.0f}"
            f" -> {'GROWING' if late > 2 * early + 100 else 'steady'}"
        )
        print(
            f"run page live: p50 {1000 * pct(pages, 0.5):.0f} ms, max {1000 * max(pages):.0f} ms"
            f"   [target < 300 ms]"
        )
        print(
            f"endpoint list (100) live: p50 {1000 * pct(lists, 0.5):.0f} ms,"
            f" max {1000 * max(lists):.0f} ms"
        )
        # CPU the API spends per view, read from its process: unlike wall time, not
        # inflated by the other processes of a shared machine. Its background work (the
        # fold of the run's events) goes on meanwhile: measured alone for 5 s first, and
        # that rate times the views' wall time is taken off.
        api_pid = p.procs["api"].pid
        cpu0, t0 = usage.cpu_of(api_pid), time.monotonic()
        time.sleep(5)
        background = (usage.cpu_of(api_pid) - cpu0) / (time.monotonic() - t0)
        print(f"API background CPU while live, no views: {100 * background:.0f} % of a core")
        views = (
            ("run page", f"/runs/{run_id}", True),
            ("endpoint list (100)", f"/api/v1/runs/{run_id}/endpoints?limit=100", False),
        )
        for label, path, html in views:
            cpu0, t0 = usage.cpu_of(api_pid), time.monotonic()
            for _ in range(VIEWS):
                timed_get(p, path, html)
            used = usage.cpu_of(api_pid) - cpu0
            per_view = max(0.0, used - background * (time.monotonic() - t0)) / VIEWS
            print(
                f"API CPU per view, {label}: {1000 * per_view:.0f} ms"
                f" ({1000 * used / VIEWS:.0f} ms with the background work)"
            )
        print(
            "run page queries while live (PostgreSQL, median of 3):", page_queries(pg.url, run_id)
        )
        t_stop = time.monotonic()
        p.request("POST", f"/api/v1/runs/{run_id}/stop")
        run = p.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=300)
        print(
            f"Stop -> {run['status']}: {time.monotonic() - t_stop:.1f} s   [target < 30 s]"
            f"   outcomes: {run['outcome_counts']}, simulated: {run['simulated']}"
        )
        print("resources over the run:")
        usage.report()
    finally:
        for proc in fleet:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        p.stop()
        for proc in fleet:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for server in (nats, pg):
            server.stop()
        shutil.rmtree(base, ignore_errors=True) if not os.environ.get("KEEP") else print(base)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def start_run(p: TestPlatform, definition: dict[str, object]) -> str:
    """Save the test and start it once. A busy API may answer projection_lag: the
    test or run is saved but not readable yet, so wait to read it, never post again."""
    status, body = p.request("POST", "/api/v1/tests", definition)
    if status == 503:  # the bench's own platform: its only test
        body = wait_listed(p, "/api/v1/tests")
    else:
        assert status == 201, body
    test_id = body.get("id") or body["test_id"]
    status, run = p.request("POST", f"/api/v1/tests/{test_id}/runs")
    if status == 503:
        assert run["error"]["code"] == "projection_lag", run
        run = wait_listed(p, f"/api/v1/runs?test_id={test_id}")
    else:
        assert status == 202, run
    return str(run.get("id") or run["run_id"])


def wait_listed(p: TestPlatform, path: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = p.request("GET", path)
        if status == 200 and body["items"]:
            return body["items"][0]  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise TimeoutError(f"nothing listed at {path} after {timeout} s")


def page_queries(database_url: str, run_id: str) -> str:
    """Where a run page's wall time goes in the database: each query it makes, timed."""
    from callmeter_api import queries
    from callmeter_api.html_runs import RUN_PAGE_QUERY
    from callmeter_storage import results

    parts = {
        "run": lambda c: results.run_row(c, run_id),
        "counts": lambda c: queries.endpoint_counts(c, run_id),
        "summary": lambda c: results.summary(c, run_id),
        "group MOS": lambda c: queries.group_mos(c, run_id),
        "listing": lambda c: queries.listing_page(c, run_id, RUN_PAGE_QUERY),
    }
    out = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, read in parts.items():
            took = []
            for _ in range(3):
                t0 = time.perf_counter()
                read(conn)
                took.append(time.perf_counter() - t0)
            out.append(f"{name} {1000 * statistics.median(took):.0f} ms")
    return ", ".join(out)


def wait_assigned(database_url: str, run_id: str, total: int, since: float) -> float:
    """Seconds from `since` until every endpoint of the run has a worker (read model)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() - since < 600:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE e.doc->>'worker_id' IS NOT NULL), min(r.status),"
                " min(r.doc->>'reason') FROM runs r LEFT JOIN endpoints e USING (run_id)"
                " WHERE r.run_id = %s",
                (run_id,),
            ).fetchone()
            if row and row[0] >= total:
                return time.monotonic() - since
            if row and row[1] in ("CANNOT_RUN_FOR_NOW", "FAILED", "COMPLETED"):
                took = time.monotonic() - since
                raise RuntimeError(
                    f"run {row[1]} after {took:.0f} s, {row[0]} of {total}"
                    f" endpoints assigned: {(row[2] or '')[:300]}"
                )
            time.sleep(0.2)
    raise TimeoutError(f"not all {total} endpoints assigned after 600 s")


if __name__ == "__main__":
    main()
