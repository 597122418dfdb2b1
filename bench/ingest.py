"""Ingest benchmark: JetStream -> metrics-ingest -> PostgreSQL, next to a raw binary COPY.

Starts its own embedded NATS and PostgreSQL and real metrics-ingest processes,
then measures, in the same run on the same servers, at equal parallelism P
(1 and N: P metrics-ingest processes against P COPY connections, each its own
process):
  1. raw COPY: P processes, each a psycopg binary COPY of its share of N rows
     straight into metric_samples (rows made ahead, not timed);
  2. pipeline: the same N samples published to JetStream as the MetricBatch
     messages workers publish (made ahead, as step 1's rows are) until all N are
     visible in metric_samples and the rollups (publish and ingest overlap), with
     P metrics-ingest processes on the durable consumer; and again with the
     packing timed too: the samples handed to each simulated worker's
     SampleBatcher, whose packing and encoding then share the cores with ingest,
     NATS and PostgreSQL (workers run elsewhere);
  3. latency (at the largest P): a steady 5,000 samples/s for a while, handed to
     the batchers as a worker's supervisor does; sample handed over -> visible
     p50/p99.
Steps 1 and 2 are repeated back to back (`pairs`, each on a new run) and the
median ratios are printed, since these machines are shared and noisy. Prints
pipeline / raw COPY per P (target >= 0.8) and the p99 latency (target < 2 s).
Beside each pair: the load average, and the CPU time per sample of each process
(the COPY processes, PostgreSQL with its backends, NATS, metrics-ingest) in the
raw COPY, in the pipeline (made messages) and in the rollup fold ingest does once
idle (untimed, but waited for, so it never lands in the next phase).

    python bench/ingest.py [N] [steady_seconds] [pairs] [ingest_processes]

What durability costs: `python bench/ingest.py durability [N] [rounds]` times the
pipeline (made messages) on fresh servers per setting, rounds interleaved, and
prints each setting's rate as a ratio of the unsafe baseline (PostgreSQL
fsync=off, JetStream's own 2-minute sync) measured in the same script.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats.js.errors
import psutil
import psycopg

from callmeter_common.bus import Bus
from callmeter_common.procs import spawn, stop_group
from callmeter_common.servers import NATS_SYNC_DEFAULT, start_nats, start_postgres
from callmeter_events import METRICS
from callmeter_events.codec import encode
from callmeter_events.metric_events import MetricBatch
from callmeter_events.streams import INGEST_DURABLE
from callmeter_storage.migrations import migrate
from callmeter_storage.samples import WRITE_COLUMNS, WRITE_TYPES, rows_of
from callmeter_vocabulary.metrics import CATALOGUE
from callmeter_vocabulary.sample import SampleHead, make
from callmeter_worker.supervisor.batcher import SampleBatcher

RATE = 5_000
CAPACITY = 200  # endpoints per worker (WorkerSettings.capacity): 250 endpoints, 2 workers


def sample(run_id: str, endpoint: int, direction: str, seq: int, ts: datetime) -> SampleHead:
    """A plausible full-catalogue sample: G.711 at 50 packets/s with a little noise."""
    rnd = random.Random(hash((run_id, endpoint, direction, seq)))
    values: dict[str, float | int | str | None] = {}
    for m in CATALOGUE:
        if m.kind == "text":
            values[m.key] = "PCMU"
        elif m.kind == "int":
            values[m.key] = rnd.randint(0, 60)
        else:
            values[m.key] = round(rnd.uniform(0, 50), 3)
    values.update(mos=round(rnd.uniform(4.2, 4.41), 3), fraction_lost=rnd.choice([0.0, 0.02]))
    return make(f"G{endpoint % 4}-{endpoint}", direction, seq, values, ts)  # type: ignore[arg-type]


def samples(run_id: str, n: int, endpoints: int = 250) -> list[SampleHead]:
    start = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        second, rest = divmod(i, endpoints * 2)
        ep, d = divmod(rest, 2)
        ts = start + timedelta(seconds=second)
        out.append(sample(run_id, ep, ("send", "recv")[d], second, ts))
    return out


def checkpoint(url: str) -> None:
    """Start a timed phase with nothing dirty: else one phase pays for the pages and
    full-page WAL images another left behind (the largest noise between phases)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


_COPY = f"COPY metric_samples ({', '.join(WRITE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def copy_share(
    url: str, run_id: str, n: int, share: int, shares: int, start: Any, out: Any
) -> None:
    """One raw COPY process: its share of the run's rows, made before the common start
    (`start`, a barrier of every share), then COPYed and committed; (t0, t1, CPU
    seconds of the COPY) to `out`."""
    rows = rows_of(run_id, samples(run_id, n)[share::shares])
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        start.wait()
        t0, cpu0 = time.time(), time.process_time()
        with cur.copy(_COPY) as copy:
            copy.set_types(list(WRITE_TYPES))
            for row in rows:
                copy.write_row(row)
        conn.commit()
        out.put((t0, time.time(), time.process_time() - cpu0))


# The processes whose CPU time is reported per sample, by role ("PostgreSQL" counts
# its backends, the ended ones too).
PIDS: dict[str, list[int]] = defaultdict(list)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each role's processes and their children."""
    used: dict[str, float] = defaultdict(float)
    for role, pids in PIDS.items():
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                t = proc.cpu_times()
                used[role] += t.user + t.system + t.children_user + t.children_system
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        c = child.cpu_times()
                        used[role] += c.user + c.system
    return used


def per_sample(before: dict[str, float], after: dict[str, float], n: int) -> str:
    return ", ".join(f"{role} {(after[role] - before[role]) * 1e6 / n:.1f}" for role in after)


def raw_copy(url: str, run_id: str, n: int, parallel: int) -> tuple[float, float]:
    """Seconds from the first COPY's start to the last commit, `parallel` processes;
    and the CPU seconds of the COPY processes while they COPY."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(parallel), ctx.Queue()
    procs = [
        ctx.Process(target=copy_share, args=(url, run_id, n, i, parallel, start, out))
        for i in range(parallel)
    ]
    checkpoint(url)
    for proc in procs:
        proc.start()
    spans = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return max(t1 for _, t1, _ in spans) - min(t0 for t0, _, _ in spans), sum(c for *_, c in spans)


def stored(conn: psycopg.Connection[tuple[Any, ...]], run_id: str) -> int:
    # The rollup counts receive-side samples exactly; it is tiny to read.
    row = conn.execute(
        "SELECT coalesce(sum(n), 0) FROM rollup_second WHERE run_id = %s AND metric = 'samples'",
        (run_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def workers(bus: Bus, run_id: str) -> dict[int, SampleBatcher]:
    """One SampleBatcher per simulated worker, publishing as the worker supervisor does."""
    return {w: SampleBatcher(bus.publish, f"bench-{run_id}-{w}") for w in range(2)}


def worker_of(s: SampleHead) -> int:
    return int(s.endpoint_id.rpartition("-")[2]) // CAPACITY


async def publish_all(bus: Bus, run_id: str, made: list[SampleHead]) -> None:
    batchers = workers(bus, run_id)
    for i, s in enumerate(made):
        batchers[worker_of(s)].add(run_id, s)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # the supervisor yields between host messages too
    for b in batchers.values():
        await b.flush()


async def wait_stored(url: str, run_id: str, recv: int, timeout: float = 180) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while stored(conn, run_id) < recv:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {stored(conn, run_id)}/{recv} stored")
            await asyncio.sleep(0.02)
    return time.perf_counter()


async def steady(bus: Bus, url: str, seconds: float) -> list[float]:
    """Publish RATE samples/s in 10 ms ticks; return publish->visible latencies (recv side)."""
    made = samples("bench-steady", int(RATE * seconds))
    recv_sent: list[float] = []
    seen: list[tuple[float, int]] = []
    done = threading.Event()

    def poll() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.is_set():
                seen.append((time.perf_counter(), stored(conn, "bench-steady")))
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    per_tick, t0, batchers = RATE // 100, time.perf_counter(), workers(bus, "bench-steady")
    for i in range(0, len(made), per_tick):
        await asyncio.sleep(max(0.0, t0 + i / RATE - time.perf_counter()))
        for s in made[i : i + per_tick]:
            batchers[worker_of(s)].add("bench-steady", s)
            if s.direction == "recv":
                recv_sent.append(time.perf_counter())
    for b in batchers.values():
        await b.flush()
    await wait_stored(url, "bench-steady", len(recv_sent))
    await asyncio.sleep(0.1)
    done.set()
    poller.join()
    # Ingest works through the stream in order, so the k-th stored receive
    # sample is (to within one batch) the k-th published one.
    latencies, j = [], 0
    for k, sent in enumerate(recv_sent):
        while seen[j][1] <= k:
            j += 1
        latencies.append(seen[j][0] - sent)
    return sorted(latencies)


def packed(run_id: str, made: list[SampleHead]) -> list[tuple[str, bytes, dict[str, str]]]:
    """The messages workers publish for these samples, made ahead: one MetricBatch per
    worker per 500 samples, encoded, with its Nats-Msg-Id (what Bus.publish sends)."""
    by_worker: dict[int, list[SampleHead]] = defaultdict(list)
    for s in made:
        by_worker[worker_of(s)].append(s)
    out = []
    for w, mine in by_worker.items():
        for seq, i in enumerate(range(0, len(mine), 500), 1):
            chunk = tuple(mine[i : i + 500])
            batch = MetricBatch(run_id=run_id, worker_id=f"bench-{w}", seq=seq, samples=chunk)
            out.append((batch.subject(), encode(batch), {"Nats-Msg-Id": batch.msg_id()}))
    return out


async def pipeline(
    bus: Bus, url: str, run_id: str, n: int, pack_timed: bool
) -> tuple[float, float]:
    """(publish seconds, publish-to-all-stored seconds) for n samples of a new run.

    pack_timed: the samples go through the workers' SampleBatcher inside the timing
    (packing and encoding are worker CPU, here sharing the cores with ingest);
    else the messages are made ahead, as raw COPY's rows are, and only publishing
    them and storing them is timed."""
    made = samples(run_id, n)
    messages = [] if pack_timed else packed(run_id, made)
    checkpoint(url)
    t0 = time.perf_counter()
    if pack_timed:
        await publish_all(bus, run_id, made)
    else:
        await asyncio.gather(*(bus.js.publish(s, d, headers=h) for s, d, h in messages))
    t_pub = time.perf_counter()
    t1 = await wait_stored(url, run_id, n // 2)
    return t_pub - t0, t1 - t0


async def wait_folded(url: str, timeout: float = 180) -> None:
    """Until no rollup delta is left unfolded."""
    unfolded = " + ".join(
        f"(SELECT count(*) FROM {t}_delta)"
        for t in ("rollup_second", "rollup_endpoint", "rollup_hist")
    )
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while (row := conn.execute(f"SELECT {unfolded}").fetchone()) and row[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{row[0]} rollup deltas still unfolded")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def platform(
    base: Path, sync: str | None = None, **pg_settings: Any
) -> AsyncIterator[tuple[Bus, str, str]]:
    """Embedded NATS and PostgreSQL (migrated) in `base`: (bus, NATS url, database url)."""
    nats = start_nats(base / "nats", sync=sync or NATS_SYNC_DEFAULT)
    pg = start_postgres(base / "pg", **pg_settings)
    PIDS["PostgreSQL"], PIDS["NATS"] = [pg.proc.pid], [nats.proc.pid]
    try:
        migrate(pg.url)
        bus = await Bus.connect(nats.url, "bench")
        await bus.ensure_streams()
        try:
            yield bus, nats.url, pg.url
        finally:
            await bus.close()
    finally:
        nats.stop()
        pg.stop()


@contextlib.asynccontextmanager
async def ingesting(
    bus: Bus, base: Path, nats_url: str, database_url: str, processes: int
) -> AsyncIterator[None]:
    """`processes` metrics-ingest processes on the durable consumer, stopped on exit."""
    env = {
        "CALLMETER_NATS_URL": nats_url,
        "CALLMETER_DATABASE_URL": database_url,
        "CALLMETER_LOG_LEVEL": "WARNING",
    }
    ingest = [
        spawn([sys.executable, "-m", "callmeter_ingest"], base / f"ingest-{i}.log", env=env)
        for i in range(processes)
    ]
    PIDS["ingest"] = [process.pid for process in ingest]
    try:
        # Each is started (imports, migrations) and waits on the consumer before anything
        # is timed: a fixed pause let their start-up share the cores with a raw COPY.
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                info = await bus.js.consumer_info(METRICS.name, INGEST_DURABLE)
                if info.num_waiting >= processes:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("metrics-ingest did not start fetching")
            await asyncio.sleep(0.1)
        yield
    finally:
        PIDS.pop("ingest")
        for process in ingest:
            stop_group(process)


async def main(n: int, steady_s: float, pairs: int, processes: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="callmeter-bench-"))
    try:
        async with platform(data) as (bus, nats_url, url):
            print(
                f"samples: {n} x {len(WRITE_COLUMNS)} columns, {os.cpu_count()} CPUs;"
                f" {pairs} pairs at each parallelism"
            )
            medians = []
            for parallel in sorted({1, processes}):
                async with ingesting(bus, data, nats_url, url, parallel):
                    medians.append((parallel, *await compare(bus, url, n, pairs, parallel)))
                    if parallel == processes and steady_s:
                        latencies = await steady(bus, url, steady_s)
            for parallel, made, packing in medians:
                print(
                    f"{parallel} ingest process(es) vs {parallel} COPY connection(s):"
                    f" pipeline / raw COPY, median of {pairs}: {made:.2f} (target >= 0.8);"
                    f" with the workers' packing timed too: {packing:.2f}"
                )
            print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
        if steady_s:
            p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
            print(
                f"steady {RATE}/s for {steady_s:.0f}s, {processes} ingest process(es):"
                f" publish->visible p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
                " (target p99 < 2000 ms)"
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)  # gigabytes of samples and WAL


async def compare(bus: Bus, url: str, n: int, pairs: int, parallel: int) -> tuple[float, float]:
    """Median ratios pipeline / raw COPY (made messages, packing timed) over `pairs`."""
    ratios: dict[bool, list[float]] = {False: [], True: []}
    for pair in range(pairs):
        # Back to back, so all three see the same outside load.
        before = cpu_seconds()
        raw_s, copy_cpu = raw_copy(url, f"bench-raw-{parallel}-{pair}", n, parallel)
        after = cpu_seconds()
        cpu = f"    CPU µs/sample: raw COPY: COPY processes {copy_cpu * 1e6 / n:.1f}, " + (
            per_sample(before, after, n)
        )
        line = f"  P={parallel} {pair + 1}: raw COPY {n / raw_s:8,.0f}/s"
        for pack_timed in (False, True):
            run_id = f"bench-pipe-{parallel}-{pair}-{'packing' if pack_timed else 'made'}"
            before = cpu_seconds()
            pub_s, pipe_s = await pipeline(bus, url, run_id, n, pack_timed)
            stored = cpu_seconds()
            # Ingest folds its rollup deltas once idle (compaction.py): PostgreSQL work
            # the pipeline defers. Waited for, untimed, so it never lands in the next
            # phase's time (a fixed pause let a slow fold run into the next raw COPY).
            await wait_folded(url)
            if not pack_timed:
                cpu += f" | pipeline: {per_sample(before, stored, n)}"
                cpu += f" | its fold after: {per_sample(stored, cpu_seconds(), n)}"
            ratios[pack_timed].append(raw_s / pipe_s)
            line += (
                f" | {'packing timed' if pack_timed else 'pipeline'} {n / pipe_s:7,.0f}/s"
                f" (publishing {n / pub_s:7,.0f}/s) -> {raw_s / pipe_s:.2f}"
            )
        print(f"{line} | load {os.getloadavg()[0]:.1f}\n{cpu}", flush=True)
    return statistics.median(ratios[False]), statistics.median(ratios[True])


# (label, PostgreSQL fsync, synchronous_commit, JetStream sync_interval); the first is
# the baseline: the embedded default before durability (fsync off, nats-server's 2m).
DURABILITY = [
    ("unsafe: fsync=off, nats sync 2m", False, "off", "2m"),
    ("fsync=on, synchronous_commit=off, nats sync 1s", True, "off", "1s"),
    ("default: fsync=on, synchronous_commit=on, nats sync 1s", True, "on", "1s"),
    ("fsync=on, synchronous_commit=on, nats sync always", True, "on", "always"),
]


async def durability_round(data: Path, setting: int, n: int, run_id: str) -> float:
    """Samples/s through the pipeline with one durability setting (servers started fresh
    on that setting's own data directories, so earlier rounds' data is there too)."""
    _, fsync, commit, sync = DURABILITY[setting]
    base = data / f"setting-{setting}"
    settings = {"synchronous_commit": commit, "fsync": fsync}
    async with platform(base, sync, **settings) as (bus, nats_url, url):
        async with ingesting(bus, base, nats_url, url, 2):
            _, pipe_s = await pipeline(bus, url, run_id, n, pack_timed=False)
    return n / pipe_s


async def durability(n: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="callmeter-bench-durability-"))
    rates: dict[int, list[float]] = defaultdict(list)
    try:
        print(f"samples: {n} per round, {rounds} rounds, settings interleaved, 2 ingest processes")
        for r in range(rounds):
            for setting in range(len(DURABILITY)):
                rates[setting].append(await durability_round(data, setting, n, f"dur-{r}"))
            print(f"  round {r + 1}: " + " | ".join(f"{rates[i][-1]:7,.0f}/s" for i in rates))
        base = statistics.median(rates[0])
        for i, (label, *_) in enumerate(DURABILITY):
            rate = statistics.median(rates[i])
            print(f"{label:58} median {rate:7,.0f}/s  ratio {rate / base:.2f}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["durability"]:
        dargs = [int(a) for a in sys.argv[2:]]
        dn, drounds = (dargs + [30_000, 3][len(dargs) :])[:2]
        asyncio.run(durability(dn, drounds))
        raise SystemExit(0)
    args = [float(a) for a in sys.argv[1:]]
    n, steady_s, pairs, processes = (args + [50_000, 15, 5, 2][len(args) :])[:4]
    asyncio.run(main(int(n), steady_s, int(pairs), int(processes)))
