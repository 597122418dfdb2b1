"""Results benchmark: a 1,000-endpoint x 300 s run's summary, from the rollups.

Fills an embedded PostgreSQL through ingest's own writer (samples + rollups,
both directions: 600,000 rows; rollup deltas folded every 5 s of samples, as
ingest does under load), then times the summary the run page shows (target
< 200 ms) while the last seconds' deltas are unfolded and after the final
fold, the full results document (run, groups, every endpoint, timings, MOS
histogram) and, for comparison, the same summary computed by scanning the
raw samples.

    python bench/results.py [endpoints] [seconds]
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from callmeter_common.servers import start_postgres
from callmeter_ingest.writer import write_rows
from callmeter_storage import results
from callmeter_storage.compaction import fold_rollups
from callmeter_storage.migrations import migrate
from callmeter_storage.rollup import group_of
from callmeter_vocabulary.metrics import CATALOGUE

RUN = "bench-run"
FOLD_EVERY = 5  # seconds of samples between folds of the rollup deltas (ingest's default)
_RAW_SCAN = """
SELECT count(*), avg(mos), min(mos), percentile_cont(ARRAY[0.5, 0.95, 0.99])
  WITHIN GROUP (ORDER BY mos), avg(jitter_ms), avg(fraction_lost), avg(rtt_ms)
FROM metric_samples WHERE run_id = %s AND direction = 'recv'
"""


def add_run(conn: psycopg.Connection[object]) -> None:
    """The run's read-model row: its definition says which group calls which (G0-G4
    call G5-G9), so results are per direction, as for a real run."""
    groups = [
        {"name": f"G{i}", "endpoints": 1, **({"calls": f"G{i + 5}"} if i < 5 else {})}
        for i in range(10)
    ]
    doc = {"run_id": RUN, "definition": {"name": "bench", "duration_s": 1, "groups": groups}}
    conn.execute("INSERT INTO runs VALUES (%s, 'bench', 'COMPLETED', now(), %s)", (RUN, Jsonb(doc)))


def rows_for_second(endpoints: int, second: int, t0: datetime) -> list[tuple[object, ...]]:
    rnd = random.Random(second)
    ts = t0 + timedelta(seconds=second)
    out = []
    for e in range(1, endpoints + 1):
        endpoint_id = f"G{e % 10}-{e}"
        for direction in ("send", "recv"):
            cells = [
                "PCMU"
                if m.kind == "text"
                else rnd.randint(0, 50)
                if m.kind == "int"
                else rnd.uniform(0, 40)
                for m in CATALOGUE
            ]
            row = [ts, RUN, endpoint_id, direction, second, group_of(endpoint_id), *cells]
            row[6] = rnd.uniform(3.6, 4.41)  # mos is the first catalogue key
            out.append(tuple(row))
    return out


def timed(conn: psycopg.Connection[object], fn, *args, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    fn(conn, *args)  # warm the cache: the run page polls, so that is the usual state
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(conn, *args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(endpoints: int, seconds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="callmeter-bench-results-"))
    pg = start_postgres(data / "pg")
    try:
        migrate(pg.url)
        t0 = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            add_run(conn)
            for second in range(seconds):
                write_rows(conn, rows_for_second(endpoints, second, t0))
                if second % FOLD_EVERY == FOLD_EVERY - 1 and second < seconds - FOLD_EVERY:
                    fold_rollups(conn)  # as ingest does under load, every ~5 s
            conn.execute("VACUUM ANALYZE")
            load_s = time.perf_counter() - started
            # Live: up to FOLD_EVERY seconds of deltas not folded yet, read through the views.
            live_ms = timed(conn, results.summary, RUN)
            fold_rollups(conn)  # what ingest does once the run's samples stop coming
            conn.execute("VACUUM ANALYZE")
            summary_ms = timed(conn, results.summary, RUN)
            full_ms = timed(conn, results.run_results, RUN, repeat=3)
            raw_ms = timed(conn, lambda c, r: c.execute(_RAW_SCAN, (r,)).fetchall(), RUN, repeat=3)
            n = results.summary(conn, RUN)["samples"]
        print(
            f"run: {endpoints} endpoints x {seconds} s = {2 * n:,} samples"
            f" (loaded through ingest's writer in {load_s:.0f} s)"
        )
        print(f"summary from rollups:            {summary_ms:8.1f} ms   (target < 200 ms)")
        print(f"  while live ({FOLD_EVERY} s of deltas unfolded): {live_ms:8.1f} ms")
        print(f"full results (run/groups/{endpoints} endpoints/timings): {full_ms:8.1f} ms")
        print(f"same summary by scanning samples:{raw_ms:8.1f} ms   (what the rollups avoid)")
    finally:
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)  # gigabytes of samples and WAL


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(args[0] if args else 1000, args[1] if len(args) > 1 else 300)
