"""UI benchmark: server-side render time of the run page and the endpoint list
for a 1,000-endpoint run (target: median < 300 ms each).

Starts its own embedded NATS and PostgreSQL, writes the read-model rows of a
synthetic run (500 callers -> 500 receivers, mid-call, 30 s of per-second
receive samples each) and of the same run finished (its page adds the results:
percentiles, distributions, charts, MOS histogram) through the real projection
and writer, then renders the pages through the real app in process (httpx ASGI
client, app lifespan on).

    python bench/ui.py [repeats]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

import callmeter_events as ev
from callmeter_api.app import create_app
from callmeter_api.settings import ApiSettings
from callmeter_common.servers import start_nats, start_postgres
from callmeter_storage.migrations import migrate
from callmeter_storage.readmodels import ReadModels

ENDPOINTS, SECONDS, TARGET_MS = 1_000, 30, 300.0
RUN, DONE, TEST = "benchrun0001", "benchdone001", "benchtest001"


def seed(url: str) -> None:
    """Fold the events of a big run in memory and write its rows, as the projector does."""
    definition = ev.TestDefinition.model_validate(
        {
            "name": "1,000 endpoints",
            "duration_s": 60,
            "buildup_s": 10,
            "groups": [
                {"name": "A", "endpoints": ENDPOINTS // 2, "codecs": ["PCMU"], "calls": "B"},
                {"name": "B", "endpoints": ENDPOINTS // 2, "codecs": ["PCMU"]},
            ],
        }
    )
    models, seq, touched = ReadModels(), 0, []
    events: list = [
        ev.TestSaved(test_id=TEST, definition=definition),
        ev.RunCreated(run_id=RUN, test_id=TEST, definition=definition),
        ev.RunQueued(run_id=RUN),
        ev.RunStarted(run_id=RUN),
    ]
    events += [
        ev.RunCreated(run_id=DONE, test_id=TEST, definition=definition),
        ev.RunQueued(run_id=DONE),
        ev.RunStarted(run_id=DONE),
    ]
    for run in (RUN, DONE):
        for g in ("A", "B"):
            for i in range(1, ENDPOINTS // 2 + 1):
                ep = dict(run_id=run, endpoint_id=f"{g}-{i}")
                events += [
                    ev.EndpointRegistered(
                        **ep, contact_uri=f"sip:{g}{i}@10.0.0.1", time_to_register_ms=12.0
                    ),
                    ev.EndpointPhaseChanged(**ep, phase="INCALL"),
                    ev.CallEstablished(**ep, codec="PCMU", call_setup_ms=40.0 + i % 17),
                ]
                if i % 50 == 0:  # a few failures so the list has colours to show
                    events.append(ev.EndpointFinished(**ep, outcome="CALL_FAILED", sip_code=486))
                elif run == DONE:
                    events.append(ev.EndpointFinished(**ep, outcome="SUCCESS"))
    events.append(ev.RunCompleted(run_id=DONE))
    for event in events:
        seq += 1
        touched += models.fold(seq, event)
    start = datetime.now(UTC) - timedelta(seconds=SECONDS)
    with psycopg.connect(url, autocommit=True) as conn:
        models.write(conn, touched)
        with conn.cursor().copy(
            "COPY metric_samples (time, run_id, endpoint_id, direction, seq, mos, jitter_ms,"
            " fraction_lost, rtt_ms, bitrate_bps) FROM STDIN"
        ) as copy:
            for g in ("A", "B"):
                for i in range(1, ENDPOINTS // 2 + 1):
                    for s in range(SECONDS):
                        copy.write_row(
                            (
                                start + timedelta(seconds=s),
                                RUN,
                                f"{g}-{i}",
                                "recv",
                                s,
                                4.3 - (i % 7) / 20,
                                2.0 + i % 5,
                                0.0,
                                1.0,
                                64_000.0,
                            )
                        )
        conn.execute(
            "INSERT INTO metric_samples (time, run_id, endpoint_id, direction, seq, mos,"
            " jitter_ms, fraction_lost, rtt_ms, bitrate_bps) SELECT time, %s, endpoint_id,"
            " direction, seq, mos, jitter_ms, fraction_lost, rtt_ms, bitrate_bps"
            " FROM metric_samples WHERE run_id = %s",
            (DONE, RUN),
        )
        rollups(conn)
        conn.execute("ANALYZE")


def rollups(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    """Fill the rollup tables ingest maintains (when this schema has them), so the
    summary and per-endpoint MOS queries read as much as they would in a real run."""
    if not conn.execute("SELECT to_regclass('rollup_endpoint')").fetchone()[0]:  # type: ignore[index]
        return
    from callmeter_storage.rollup import ROLLUP_METRICS, bin_of

    group = "split_part(endpoint_id, '-', 1)"
    for m in ROLLUP_METRICS:
        conn.execute(
            f"INSERT INTO rollup_second_folded SELECT run_id, {group}, date_trunc('second', time), %s,"
            f" count({m}), sum({m}), min({m}), max({m}) FROM metric_samples WHERE {m} IS NOT NULL"
            f" GROUP BY 1, 2, 3",
            (m,),
        )
        conn.execute(
            f"INSERT INTO rollup_endpoint_folded SELECT run_id, endpoint_id, %s, {group}, count({m}),"
            f" sum({m}), min({m}), max({m}) FROM metric_samples WHERE {m} IS NOT NULL"
            f" GROUP BY 1, 2, 4",
            (m,),
        )
        rows = conn.execute(
            f"SELECT run_id, endpoint_id, {m}, count(*) FROM metric_samples WHERE {m} IS NOT NULL"
            " GROUP BY 1, 2, 3"
        ).fetchall()
        bins: dict[tuple[str, str, int], int] = {}
        for run, ep, value, n in rows:
            key = (run, ep, bin_of(m, value))
            bins[key] = bins.get(key, 0) + n
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rollup_hist_folded VALUES (%s, %s, %s, %s, %s, %s)",
                [(run, ep, m, b, ep.split("-")[0], n) for (run, ep, b), n in bins.items()],
            )


BENCH_KEY = "bench-ui-key"


async def measure(settings: ApiSettings, repeats: int) -> dict[str, list[float]]:
    app = create_app(settings)
    paths = {
        "run page": f"/runs/{RUN}",
        "run page, finished (with results)": f"/runs/{DONE}",
        "endpoint list (page 1 of 20)": f"/runs/{RUN}/endpoints",
        "endpoint list (failed, by MOS)": f"/runs/{RUN}/endpoints?outcome=failed&sort=mos",
        "run live block (one SSE update)": f"/runs/{RUN}/live",
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {BENCH_KEY}"},  # nothing is served without one
        ) as client:
            for name, path in paths.items():
                for i in range(repeats + 2):
                    t0 = time.perf_counter()
                    r = await client.get(path)
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    assert path != f"/runs/{DONE}" or 'id="results"' in r.text, "no results"
                    if i >= 2:  # first two warm caches and templates
                        times[name].append(elapsed)
    return times


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory(prefix="callmeter-bench-ui-") as tmp:
        nats = start_nats(Path(tmp) / "nats")
        pg = start_postgres(Path(tmp) / "pg")
        try:
            migrate(pg.url)
            t0 = time.perf_counter()
            seed(pg.url)
            print(f"seeded {ENDPOINTS} endpoints x {SECONDS} s in {time.perf_counter() - t0:.1f} s")
            settings = ApiSettings(nats_url=nats.url, database_url=pg.url, api_keys=BENCH_KEY)
            times = asyncio.run(measure(settings, repeats))
        finally:
            nats.stop()
            pg.stop()
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        worst = max(worst, median)
        print(
            f"{name:36s} median {median:7.1f} ms   min {min(values):7.1f}   "
            f"max {max(values):7.1f}   (n={len(values)})"
        )
    verdict = "OK" if worst < TARGET_MS else "SLOW"
    print(f"worst median {worst:.1f} ms vs target {TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
