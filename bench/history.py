"""Start-up time and memory against history: a long-lived installation vs a fresh one.

    python bench/history.py [--runs 2000] [--endpoints-per-run 72] [--data-dir DIR]

Starts its own NATS and PostgreSQL under a temporary directory, then measures, for
the scheduler, the dispatcher and the API, the time from process start to ready and
the resident memory (VmRSS) at that moment:

1. with an empty history;
2. after publishing `--runs` finished runs written with the real event types
   (bench/dispatch.py's run_events: 13 events per endpoint, and the
   run's RunEvaluated; the defaults give 2,000 runs and 2.04 million events).

Before the measured starts, `callmeter projections rebuild` writes the read models
(as a long-lived installation has them), and the scheduler and the dispatcher run
once until ready and are stopped with SIGTERM (snapshots taken). Ready means: scheduler and dispatcher logged
"caught up"; the API answered POST /api/v1/tests with 201, then POST
/api/v1/tests/<id>/runs with 202 (read-your-writes: its projector has folded every
test and run event before the new ones). Each service is started
alone, so the figures do not share the two cores.

Prints both rows and the ratios history/empty (targets: ready <= 2 s, RSS <= 1.5x).
The data directory (the stream alone is ~1 GB) is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats

from callmeter_cli.platform import MODULES
from callmeter_cli.rebuild import rebuild
from callmeter_common.bus import Bus
from callmeter_common.procs import free_port, spawn, stop_group
from callmeter_common.servers import Server, start_nats, start_postgres
from callmeter_events import EVENTS, RunEvaluated, encode
from callmeter_storage.migrations import migrate

sys.path.insert(0, str(Path(__file__).parent))
from dispatch import run_events  # noqa: E402 - a sibling bench script

SERVICES = ("scheduler", "dispatcher", "api")
TEST = {"name": "bench", "duration_s": 5, "groups": [{"name": "A", "endpoints": 1}]}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


BENCH_KEY = "bench-history-key"


def _post(port: int, path: str, body: object) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), {}
    except OSError:
        return 0, {}


def _api_ready(port: int) -> bool:
    """Both read-model projections caught up: a saved test, then a run of it, each
    answered once the read models show it (the run waits behind every run event)."""
    status, test = _post(port, "/api/v1/tests", TEST)
    if status != 201:
        return False
    return _post(port, f"/api/v1/tests/{test['id']}/runs", {})[0] == 202


class Services:
    def __init__(self, data_dir: Path, nats_url: str, database_url: str) -> None:
        self.data_dir = data_dir
        self.env = {
            "CALLMETER_NATS_URL": nats_url,
            "CALLMETER_DATABASE_URL": database_url,
            "CALLMETER_API_KEYS": BENCH_KEY,  # nothing is served without a key
        }
        self.starts = 0

    def start_ready(self, name: str, timeout: float) -> tuple[float, int]:
        """Start `name`, wait until it is ready; returns (seconds, RSS KiB), then stops it."""
        self.starts += 1  # (a log per start; two may start at once, the count is a name)
        log = self.data_dir / f"{name}-{self.starts}-{time.monotonic_ns()}.log"
        port = free_port()
        env = {**self.env, "CALLMETER_PORT": str(port)}
        t0 = time.perf_counter()
        proc = spawn([sys.executable, "-m", MODULES[name]], log, env=env)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}; see {log}")
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"{name} not ready after {timeout} s; see {log}")
                if self._ready(name, log, port):
                    return time.perf_counter() - t0, rss_kib(proc.pid)
                time.sleep(0.02)
        finally:
            stop_group(proc, timeout=30)

    @staticmethod
    def _ready(name: str, log: Path, port: int) -> bool:
        if name == "api":
            return _api_ready(port)
        return b"caught up" in log.read_bytes()


async def publish_history(nats_url: str, runs: int, per_run: int) -> int:
    """Publish `runs` finished runs; returns the events written.

    Plain publishes into the stream's subjects, flushed in batches, each batch
    closed by one acknowledged publish (a connection's messages are stored in
    order, so its ack means the batch before it is stored): far faster than an
    ack per message, and the stream's message count is checked at the end.
    """
    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=60)
    total = 0
    t0 = time.perf_counter()
    try:
        for run_no in range(1, runs + 1):
            events = list(run_events(run_no, per_run))
            # A finished run of a real installation also has its thresholds evaluated.
            events.append(
                RunEvaluated(run_id=events[0].run_id, passed=True, results=[], metrics={})
            )  # type: ignore[attr-defined]
            for event in events[:-1]:
                headers = {"Nats-Msg-Id": event.msg_id()}
                await nc.publish(event.subject(), encode(event), headers=headers)
            last = events[-1]
            await js.publish(last.subject(), encode(last), headers={"Nats-Msg-Id": last.msg_id()})
            total += len(events)
            if run_no % 200 == 0:
                rate = total / (time.perf_counter() - t0)
                print(f"  {run_no:,} runs, {total:,} events ({rate:,.0f}/s)", flush=True)
        stored = (await js.stream_info(EVENTS.name)).state.messages
        if stored < total:
            raise RuntimeError(f"only {stored:,} of {total:,} events were stored")
    finally:
        await nc.close()
    return total


async def ensure_streams(nats_url: str) -> int:
    bus = await Bus.connect(nats_url, "bench")
    try:
        await bus.ensure_streams()
        return await bus.last_seq(EVENTS.name)
    finally:
        await bus.close()


def measure(
    services: Services, label: str, warm_up: bool, timeout: float
) -> dict[str, tuple[float, int]]:
    if warm_up:  # side by side: not measured (the API's warm-up was the rebuild)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: services.start_ready(n, timeout), SERVICES[:2]))
    figures = {}
    for name in SERVICES:
        figures[name] = t, rss = services.start_ready(name, timeout)
        print(f"  {label:8} {name:10} ready {t:6.2f} s   RSS {rss / 1024:7.1f} MiB", flush=True)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=2_000)
    ap.add_argument("--endpoints-per-run", type=int, default=78)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a start may take")
    ap.add_argument(
        "--no-warm-up",
        action="store_true",
        help="skip the scheduler's and dispatcher's first start (for code that keeps no "
        "snapshot, where it leaves nothing behind)",
    )
    args = ap.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="callmeter-history-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on kill as on Ctrl-C
    servers: list[Server] = []
    try:
        servers.append(start_nats(data_dir, free_port()))
        servers.append(start_postgres(data_dir, free_port()))
        nats_url, database_url = servers[0].url, servers[1].url
        migrate(database_url)
        asyncio.run(ensure_streams(nats_url))
        services = Services(data_dir, nats_url, database_url)

        warm_up = not args.no_warm_up
        print("empty history:", flush=True)
        rebuild(nats_url, database_url)
        empty = measure(services, "empty", warm_up, args.timeout)

        print(f"publishing {args.runs:,} finished runs:", flush=True)
        t0 = time.perf_counter()
        written = asyncio.run(publish_history(nats_url, args.runs, args.endpoints_per_run))
        last = asyncio.run(ensure_streams(nats_url))
        took = time.perf_counter() - t0
        print(f"  {written:,} events in {took:.0f} s; stream at sequence {last:,}", flush=True)

        t0 = time.perf_counter()
        rebuild(nats_url, database_url)  # the read models of a long-lived installation
        print(f"  read models rebuilt in {time.perf_counter() - t0:.0f} s", flush=True)
        print("with history:", flush=True)
        full = measure(services, "history", warm_up, args.timeout)

        print(
            f"\n{'service':10} {'ready empty':>12} {'ready hist':>11} {'RSS empty':>10} "
            f"{'RSS hist':>9} {'RSS ratio':>10}"
        )
        for name in SERVICES:
            (te, re), (th, rh) = empty[name], full[name]
            ok = "ok" if th <= 2.0 and rh <= 1.5 * re else "MISSES TARGET"
            print(
                f"{name:10} {te:10.2f} s {th:9.2f} s {re / 1024:6.1f} MiB {rh / 1024:5.1f} MiB "
                f"{rh / re:9.2f}x  {ok}"
            )
        du = subprocess.run(["du", "-sh", str(data_dir)], capture_output=True, text=True)
        print(f"data on disk before clean-up: {du.stdout.split()[0] if du.stdout else '?'}")
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
