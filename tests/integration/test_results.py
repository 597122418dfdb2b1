"""Results from the rollups, checked against the raw samples; partitions; migrations;
the /api/v1 results routes, exports and the results page.

Every test but the day-partition one runs in both storage modes (`storage_mode`
in conftest.py): plain PostgreSQL and TimescaleDB."""

from __future__ import annotations

import csv
import io
import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from callmeter_events import (
    MetricSample,
    RunCompleted,
    RunCreated,
    RunQueued,
    RunStarted,
)
from callmeter_events import (
    TestDefinition as Definition,
)
from callmeter_ingest.writer import (
    _COPY_DELTAS,
    copy_rows,
    write_new_rows,
    write_rows,
    write_staged,
)
from callmeter_projections import RunsProjection
from callmeter_projections.version import FOLD_VERSION
from callmeter_storage import partitions, results, stats
from callmeter_storage.compaction import fold_rollups
from callmeter_storage.migrations import MIGRATIONS, migrate
from callmeter_storage.readmodels import VERSION_NAME, doc
from callmeter_storage.rollup_deltas import STAT_METRICS, endpoint_metric_sql
from callmeter_storage.samples import to_row, to_write_order

pytestmark = pytest.mark.integration
KEY = "results-test-key"  # an API serves nothing without a key or a session
BEARER = {"Authorization": f"Bearer {KEY}"}


def recent() -> datetime:
    """Where a run's samples start: half a minute ago, as if just measured (TimescaleDB's
    continuous aggregates see samples stored late only once their policy refreshes),
    on a whole 10 s so that 5 s buckets split the run evenly."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    return now - timedelta(seconds=now.second % 10)


def run_rows(run_id: str, t0: datetime | None = None) -> list[tuple[object, ...]]:
    """Two groups, 3 endpoints each, 20 s; MOS and jitter vary by endpoint and second."""
    t0 = t0 or recent()
    rows = []
    for g in ("A", "B"):
        for e in range(1, 4):
            for s in range(20):
                for d in ("send", "recv"):
                    metrics = {
                        "mos": 4.4 - 0.1 * e - (0.5 if g == "B" and s % 5 == 0 else 0),
                        "jitter_ms": float(e + s % 3),
                        "rtt_ms": 20.0 + e,
                        "fraction_lost": 0.0,
                        "packets": 50,
                        "packets_lost": 0,
                        "post_dial_delay_ms": 100.0 * e,
                        "call_setup_ms": 150.0 * e,
                        "call_duration_s": float(s),
                    }
                    rows.append(
                        to_row(
                            MetricSample(
                                run_id=run_id,
                                endpoint_id=f"{g}-{e}",
                                direction=d,
                                seq=s,
                                ts=t0 + timedelta(seconds=s),
                                metrics=metrics,
                            )
                        )
                    )
    return rows


@pytest.fixture(scope="module")
def database_url(new_database) -> str:  # type: ignore[no-untyped-def]
    # Our own database: the endpoint rows below must not join the shared read
    # models (a rebuild from the log elsewhere would not recreate them).
    return new_database()  # type: ignore[no-any-return]


@pytest.fixture
def run_id(database_url: str) -> str:
    migrate(database_url)
    rid = uuid.uuid4().hex[:8]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = run_rows(rid)
        # Part folded, part still deltas: the same keys on both sides of the rollup views.
        assert write_rows(conn, rows[:100]) == 100
        assert fold_rollups(conn)
        assert write_rows(conn, rows[100:]) == 140
        assert write_rows(conn, rows[:50]) == 0  # redelivered: nothing counted twice
        definition = {
            "name": "t",
            "duration_s": 20,
            "groups": [{"name": "A", "endpoints": 3, "calls": "B"}, {"name": "B", "endpoints": 3}],
        }
        conn.execute(
            "INSERT INTO runs VALUES (%s, 't', 'COMPLETED', now(), %s)",
            # Finished and evaluated: a projector starting on these rows leaves it be.
            (
                rid,
                Jsonb(
                    {
                        "run_id": rid,
                        "definition": definition,
                        "evaluation": {"passed": True, "results": []},
                    }
                ),
            ),
        )
        # Rows of this fold version: an API starting on them keeps them (it drops read
        # models another fold version wrote, and ones with no version, as new).
        conn.execute(
            "INSERT INTO projection_versions VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (VERSION_NAME, FOLD_VERSION),
        )
        conn.execute(
            "INSERT INTO endpoints VALUES"
            " (%s, 'A-1', 'A', 'CLOSED', 'SUCCESS', NULL, '{\"role\": \"caller\"}'),"
            " (%s, 'A-2', 'A', 'CLOSED', 'REGISTRATION_FAILED', NULL, '{\"role\": \"caller\"}'),"
            " (%s, 'B-1', 'B', 'CLOSED', 'CALL_FAILED', 486, '{\"role\": \"receiver\"}'),"
            " (%s, 'B-2', 'B', 'INCALL', NULL, NULL, '{\"role\": \"receiver\"}')",
            (rid, rid, rid, rid),
        )
    return rid


def test_run_group_and_endpoint_figures_match_the_raw_samples(
    database_url: str, run_id: str
) -> None:
    with psycopg.connect(database_url) as conn:
        doc = results.run_results(conn, run_id)
        exact = conn.execute(
            "SELECT group_name, avg(mos), min(mos), max(mos),"
            " percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY mos)"
            " FROM metric_samples WHERE run_id = %s AND direction = 'recv' GROUP BY ROLLUP (1)",
            (run_id,),
        ).fetchall()
    # A calls B: B's receive side is the run's send direction, A's its recv direction.
    direction = {"A": "recv", "B": "send"}
    for group, avg, lo, hi, pcts in exact:
        if group is None:
            continue  # every receive side together is no figure of the run (two directions)
        for got in (
            doc["groups"][group]["metrics"]["mos"],
            doc["directions"][direction[group]]["mos"],
        ):
            assert got["avg"] == pytest.approx(avg) and (got["min"], got["max"]) == (lo, hi)
            for name, value in zip(("p50", "p95", "p99"), pcts, strict=True):
                assert got[name] == pytest.approx(value, abs=0.01), (group, name)
                assert lo <= got[name] <= hi
        assert doc["groups"][group]["direction"] == direction[group]
    # The run's headline is the worse direction's: B received the lower MOS.
    by_group = {g: (avg, lo) for g, avg, lo, _, _ in exact if g}
    assert doc["run"]["metrics"]["mos"]["avg"] == pytest.approx(
        min(a for a, _ in by_group.values())
    )
    assert doc["run"]["metrics"]["mos"]["avg"] == pytest.approx(by_group["B"][0])
    assert doc["run"]["metrics"]["mos"]["min"] == min(lo for _, lo in by_group.values())
    assert doc["run"]["metrics"]["samples"]["n"] == 120
    assert doc["endpoints"]["B-3"]["jitter_ms"]["max"] == 5.0
    # Per endpoint too, the percentiles are within a bin of the raw samples' own.
    with psycopg.connect(database_url) as conn:
        raw = conn.execute(
            "SELECT endpoint_id, percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
            " (ORDER BY jitter_ms) FROM metric_samples WHERE run_id = %s AND direction = 'recv'"
            " GROUP BY 1",
            (run_id,),
        ).fetchall()
    assert len(doc["endpoints"]) == len(raw) == 6
    for endpoint, pcts in raw:
        got = doc["endpoints"][endpoint]["jitter_ms"]
        for name, value in zip(("p50", "p95", "p99"), pcts, strict=True):
            assert got[name] == pytest.approx(value, abs=0.1), (endpoint, name)
    # Success rates come from the endpoints read model, in percent: calls of the callers
    # that finished (A-1 succeeded, A-2 never registered), registrations of all.
    assert doc["run"]["call_success_rate"] == pytest.approx(50.0)
    assert doc["run"]["registration_success_rate"] == pytest.approx(75.0)
    assert doc["groups"]["B"]["registration_success_rate"] == 100.0
    assert doc["groups"]["B"]["call_success_rate"] is None  # receivers: no calls of their own
    assert doc["outcomes"] == {
        "CALL_FAILED": 1,
        "REGISTRATION_FAILED": 1,
        "RUNNING": 1,
        "SUCCESS": 1,
    }
    # Per-call timings: one row per endpoint, from its newest sample.
    pdd = doc["timings"]["post_dial_delay_ms"]
    assert (pdd["n"], pdd["min"], pdd["max"], pdd["p50"]) == (6, 100.0, 300.0, 200.0)
    assert sum(b["count"] for b in pdd["histogram"]) == 6
    # One MOS histogram per direction, counting that direction's receive samples only.
    hist = {
        side: sum(b["count"] for b in buckets) for side, buckets in doc["mos_histogram"].items()
    }
    with psycopg.connect(database_url) as conn:
        raw = dict(
            conn.execute(
                "SELECT CASE group_name WHEN 'B' THEN 'send' ELSE 'recv' END, count(mos)"
                " FROM metric_samples WHERE run_id = %s AND direction = 'recv' GROUP BY 1",
                (run_id,),
            ).fetchall()
        )
    assert hist == raw and sum(hist.values()) == 120
    summary = results.summary(conn=psycopg.connect(database_url), run_id=run_id)
    assert summary["samples"] == 120 and summary["packets_received"] == 6000
    assert summary["send"]["samples"] == summary["recv"]["samples"] == 60
    assert summary["mos"] == summary["send"]["mos"] < summary["recv"]["mos"]
    assert summary["fraction_lost"] == summary["send"]["fraction_lost"] == 0.0


# What readers see of each rollup, summed per key (a view may hold several rows of
# a key: folded ones and deltas not folded yet).
_FIGURES = {
    "rollup_second": (
        "group_name, second, metric, sum(n), round(sum(total)::numeric, 6), min(lo), max(hi)",
        "1, 2, 3",
    ),
    "rollup_endpoint": (
        "endpoint_id, metric, min(group_name), sum(n),"
        " round(sum(total)::numeric, 6), min(lo), max(hi)",
        "1, 2",
    ),
    "rollup_hist": ("endpoint_id, metric, bin, min(group_name), sum(n)", "1, 2, 3"),
    "call_timings": (
        "endpoint_id, group_name, last_time, post_dial_delay_ms, call_setup_ms",
        "1, 2, 3, 4, 5",
    ),
}


def rollup_figures(conn: psycopg.Connection, run_id: str) -> dict[str, list[tuple[object, ...]]]:  # type: ignore[type-arg]
    return {
        table: sorted(
            conn.execute(
                f"SELECT {select} FROM {table} WHERE run_id = %s GROUP BY {keys}", (run_id,)
            )
        )
        for table, (select, keys) in _FIGURES.items()
    }


def test_one_metric_read_from_the_tables_equals_the_rollup_view(
    database_url: str, run_id: str
) -> None:
    """endpoint_metric_sql (what the run page's MOS reads) gives exactly the rows of the
    rollup_endpoint view for every metric, on a run with both folded rows and deltas."""
    with psycopg.connect(database_url) as conn:
        for table in ("rollup_endpoint_folded", "rollup_endpoint_delta"):
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = %s", (run_id,))
            assert n.fetchone()[0] > 0, f"the fixture has no {table} rows"  # type: ignore[index]
        for metric in ("samples", *STAT_METRICS):
            view = conn.execute(
                "SELECT endpoint_id, n, total FROM rollup_endpoint"
                " WHERE run_id = %s AND metric = %s",
                (run_id, metric),
            ).fetchall()
            direct = conn.execute(endpoint_metric_sql(metric), {"run_id": run_id}).fetchall()
            assert sorted(direct) == sorted(view), metric
            assert view or metric not in ("samples", "mos"), metric
    with pytest.raises(ValueError, match="no rollup of 'codec'"):
        endpoint_metric_sql("codec")


def test_the_fast_path_rolls_up_exactly_what_the_conflict_tolerant_path_does(
    database_url: str,
) -> None:
    """Ingest's fast path rolls up the rows it COPYs; the conflict-tolerant path the
    rows its INSERT stored (RETURNING, read back with their stored types). Same rows,
    same rollups: edge bins, values missing, sub-second times, out-of-order samples
    and send/recv at the same time; a redelivered part adds nothing."""
    migrate(database_url)
    t0 = recent()  # once: a redelivery is the same rows, and both runs the same seconds

    def rows(rid: str) -> list[tuple[object, ...]]:
        odd = [
            to_row(
                MetricSample(
                    run_id=rid,
                    endpoint_id="C-1",
                    direction=d,
                    seq=i,
                    ts=t0 + timedelta(seconds=7 - i, microseconds=250_000 * i),
                    metrics={
                        "mos": m,
                        "rtt_ms": None if i == 1 else 0.0,
                        "jitter_ms": 1e6,
                        "post_dial_delay_ms": None if i == 2 else 10.0 * i,
                    },
                )
            )
            for i, (m, d) in enumerate(
                ((0.9, "recv"), (1.001, "recv"), (4.6, "send"), (1.0, "recv"))
            )
        ]
        return [to_write_order(r) for r in run_rows(rid, t0) + odd]

    fast, slow = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert write_new_rows(conn, rows(fast)) == 244
        assert write_staged(conn, rows(slow)[:100]) == 100
        assert write_staged(conn, rows(slow)) == 144  # the first 100 again: counted once
        assert write_staged(conn, rows(slow)) == 0
        before = rollup_figures(conn, fast)
        assert before == rollup_figures(conn, slow) and all(before.values())
        assert fold_rollups(conn)  # deltas -> folded rows: what readers see is unchanged
        assert rollup_figures(conn, fast) == before == rollup_figures(conn, slow)
        assert conn.execute("SELECT count(*) FROM rollup_hist_delta").fetchone() == (0,)
        with pytest.raises(psycopg.errors.UniqueViolation):  # nothing stored twice
            write_new_rows(conn, rows(fast)[:3])
        assert write_rows(conn, run_rows(fast, t0)) == 0


def test_folding_while_ingest_writes_counts_every_sample_once(database_url: str) -> None:
    """A fold runs while writes commit: each delta is folded once, none is lost, and
    the rollups equal those of the same samples written at once."""
    migrate(database_url)
    chunked, whole = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    t0 = recent()  # once: both runs' seconds must be the same ones
    stop = threading.Event()
    folds = []

    def fold_until_stopped() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                folds.append(fold_rollups(conn))

    folder = threading.Thread(target=fold_until_stopped)
    folder.start()
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = [to_write_order(r) for r in run_rows(chunked, t0)]
            for i in range(0, len(rows), 12):
                assert write_new_rows(conn, rows[i : i + 12]) == len(rows[i : i + 12])
    finally:
        stop.set()
        folder.join()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert write_rows(conn, run_rows(whole, t0)) == 240
        assert any(f for f in folds), "no fold ran while writing"
        got = rollup_figures(conn, chunked)
        assert got == rollup_figures(conn, whole) and all(got.values())


def test_series_per_second_and_per_endpoint_with_the_key_checked(
    database_url: str, run_id: str
) -> None:
    with psycopg.connect(database_url) as conn:
        points = stats.run_series(conn, run_id)
        coarse = stats.run_series(conn, run_id, group="B", bucket_s=5)
        series = stats.endpoint_series(conn, run_id, "A-2", "jitter_ms")
        with pytest.raises(KeyError):
            stats.endpoint_series(conn, run_id, "A-2", "mos; DROP TABLE runs")
        send = stats.run_series(conn, run_id, direction="send")
        worst = stats.worst_series(conn, run_id)
        exact = conn.execute(
            "SELECT group_name, date_trunc('second', time), avg(mos) FROM metric_samples"
            " WHERE run_id = %s AND direction = 'recv' GROUP BY 1, 2 ORDER BY 2",
            (run_id,),
        ).fetchall()
    assert len(points) == 20 and points[0]["mos"]["n"] == 6
    assert len(coarse) == 4 and coarse[0]["mos"]["n"] == 15
    assert [v for _, v in series][:4] == [2.0, 3.0, 4.0, 2.0]
    # Per direction: B receives what A (the caller) sends; per second, the worse one.
    by = {(g, t): avg for g, t, avg in exact}
    assert [p["mos"]["avg"] for p in send] == pytest.approx([by["B", p["t"]] for p in send])
    assert len(worst) == 20 and [w["t"] for w in worst] == list(range(20))
    for w, p in zip(worst, points, strict=True):
        assert w["mos"] == pytest.approx(min(by["A", p["t"]], by["B", p["t"]]))


def test_migrations_applied_concurrently_run_once(new_database, storage_mode: str) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    with ThreadPoolExecutor(4) as pool:
        modes = list(pool.map(lambda _: migrate(url), range(4)))
    assert modes == [storage_mode] * 4 and migrate(url) == storage_mode
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert sorted(versions) == [v for v, _, _ in MIGRATIONS]


def test_histogram_deltas_not_folded_at_m026_read_the_same_after_it(new_database) -> None:  # type: ignore[no-untyped-def]
    """m026 stores a histogram delta as arrays per endpoint and write, not as a row per
    combination of the four bins: rows appended before it and not folded yet count the
    same in rollup_hist after it, and fold as before."""
    url = new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, step in MIGRATIONS:
            if version >= 26:
                break
            with conn.transaction():
                step(conn)
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, name))
        # (run, endpoint, group, mos bin, jitter bin, loss bin, rtt bin, n)
        conn.execute(
            "INSERT INTO rollup_hist_delta VALUES ('r', 'A-1', 'A', 300, 12, NULL, NULL, 2),"
            " ('r', 'A-1', 'A', 301, NULL, NULL, NULL, 1), ('r', 'A-2', 'A', 300, 12, 0, 5, 4),"
            " ('r', 'A-1', 'A', 300, 13, NULL, NULL, 3)"
        )
        query = (
            "SELECT endpoint_id, metric, bin, sum(n) FROM rollup_hist WHERE run_id = 'r'"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        before = conn.execute(query).fetchall()
        migrate(url)
        assert conn.execute(query).fetchall() == before
        assert ("A-1", "mos", 300, 5) in before and len(before) == 8
        assert fold_rollups(conn) == 8  # one folded row per key
        assert conn.execute(query).fetchall() == before
        assert conn.execute("SELECT count(*) FROM rollup_hist_delta").fetchone() == (0,)
        # What ingest appends now: arrays (written by its own binary array dumper).
        with conn.cursor() as cur:
            hist = ("r", "A-3", "A", [300, 301], [2, 7], [], [], [0], [2**40], [], [])
            copy_rows(cur, *_COPY_DELTAS[2], [hist])
        assert conn.execute(query.replace("'r'", "'r' AND endpoint_id = 'A-3'")).fetchall() == [
            ("A-3", "fraction_lost", 0, 2**40),
            ("A-3", "mos", 300, 2),
            ("A-3", "mos", 301, 7),
        ]


@pytest.fixture(scope="module")
def plain_url(own_database: str) -> str:
    return own_database


def test_a_day_partition_made_late_takes_its_rows_out_of_default(plain_url: str) -> None:
    """Plain mode only: TimescaleDB makes its own chunks."""
    database_url = plain_url
    migrate(database_url)
    day = date(2020, 2, 2) + timedelta(days=uuid.uuid4().int % 3000)
    rid = uuid.uuid4().hex[:8]
    t0 = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        write_rows(conn, run_rows(rid, t0))  # no partition for that day yet: DEFAULT
        where = conn.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM metric_samples WHERE run_id = %s", (rid,)
        ).fetchall()
        assert where == [("metric_samples_default",)]
        assert partitions.ensure_days(conn, [day, day]) == [day]
        assert partitions.ensure_days(conn, [day]) == []  # already there
        where = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM metric_samples WHERE run_id = %s"
            " GROUP BY 1",
            (rid,),
        ).fetchall()
        assert where == [(f"metric_samples_{day:%Y%m%d}", 240)]
        # Retention drops whole days, oldest first; 0 keeps everything.
        assert partitions.drop_expired(conn, 0) == []
        assert day in partitions.drop_expired(conn, 1, today=day + timedelta(days=2))
        assert conn.execute(
            "SELECT count(*) FROM metric_samples WHERE run_id = %s", (rid,)
        ).fetchone() == (0,)


def test_results_routes_and_exports(nats_server, database_url: str, run_id: str) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from callmeter_api.app import create_app
    from callmeter_api.settings import ApiSettings

    app = create_app(ApiSettings(nats_url=nats_server.url, database_url=database_url, api_keys=KEY))
    with TestClient(app, headers=BEARER) as client:
        body = client.get(f"/api/v1/runs/{run_id}/results").json()
        assert body["run"]["metrics"]["mos"]["n"] == 120
        series = client.get(f"/api/v1/runs/{run_id}/endpoints/A-1/series?key=mos").json()
        assert len(series["points"]) == 20 and series["unit"] == "1-5"
        bad = client.get(f"/api/v1/runs/{run_id}/endpoints/A-1/series?key=nope")
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "key"
        assert client.get("/api/v1/runs/nosuchrun/results").status_code == 404
        assert len(client.get(f"/api/v1/runs/{run_id}/series").json()["points"]) == 20
        recv = client.get(f"/api/v1/runs/{run_id}/series?direction=recv").json()["points"]
        assert len(recv) == 20 and recv[0]["mos"]["n"] == 3  # A's three endpoints
        assert client.get(f"/api/v1/runs/{run_id}/series?direction=up").status_code == 422

        text = client.get(f"/api/v1/runs/{run_id}/samples?format=csv").text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 240 and rows[0]["codec"] == "" and "jb_avg_delay_ms" in rows[0]

        import pyarrow.parquet as pq

        raw = client.get(f"/api/v1/runs/{run_id}/samples?format=parquet").content
        table = pq.read_table(io.BytesIO(raw))
        assert table.num_rows == 240
        assert math.isclose(sum(table.column("packets").to_pylist()), 240 * 50)


def seed_finished_run(conn: psycopg.Connection, run_id: str) -> None:  # type: ignore[type-arg]
    """A COMPLETED run of groups A and B (3 endpoints each) in the read models, as the
    projector writes it, with the samples of `run_rows`."""
    definition = Definition.model_validate(
        {
            "name": "results page",
            "duration_s": 20,
            "groups": [
                {"name": "A", "endpoints": 3, "codecs": ["PCMU"], "calls": "B"},
                {"name": "B", "endpoints": 3, "codecs": ["PCMU"]},
            ],
        }
    )
    runs = RunsProjection()
    for seq, event in enumerate(
        [
            RunCreated(run_id=run_id, test_id="t-page", definition=definition),
            RunQueued(run_id=run_id),
            RunStarted(run_id=run_id),
            RunCompleted(run_id=run_id),
        ],
        start=1,
    ):
        runs.apply(seq, event)
    run = runs.runs[run_id]
    assert run.status == "COMPLETED"
    conn.execute(
        "INSERT INTO runs VALUES (%s, %s, %s, %s, %s)",
        (run_id, run.test_id, run.status, run.created_at, Jsonb(doc(run))),
    )
    for e in runs.endpoints[run_id].values():
        conn.execute(
            "INSERT INTO endpoints VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (run_id, e.endpoint_id, e.group, e.phase, e.outcome, e.sip_code, Jsonb(doc(e))),
        )
    assert write_rows(conn, run_rows(run_id)) == 240


def test_the_results_page_of_a_finished_run(nats_server, database_url: str) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from callmeter_api.app import create_app
    from callmeter_api.settings import ApiSettings

    migrate(database_url)
    rid = uuid.uuid4().hex[:8]
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_finished_run(conn, rid)
        # Per group, from the raw samples: A receives what B sends back (recv), B what
        # the callers of A send (send).
        by_group = dict(
            (g, (avg, lo))
            for g, avg, lo in conn.execute(
                "SELECT group_name, avg(mos), min(mos) FROM metric_samples"
                " WHERE run_id = %s AND direction = 'recv' GROUP BY 1",
                (rid,),
            ).fetchall()
        )
    app = create_app(ApiSettings(nats_url=nats_server.url, database_url=database_url, api_keys=KEY))
    with TestClient(app, headers=BEARER) as client:
        page = client.get(f"/runs/{rid}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "COMPLETED" in page.text
    html = page.text
    assert 'id="results"' in html and 'id="percentiles"' in html

    def mos_row(side: str) -> list[str]:
        row = html.split(f'data-metric="mos" data-side="{side}"', 1)[1].split("</tr>", 1)[0]
        cells = [c.split("<", 1)[0] for c in row.split('class="num')[1:]]
        return [c.split(">", 1)[1] for c in cells]

    for side, group in (("send", "B"), ("recv", "A")):
        avg, lo = by_group[group]
        values = mos_row(side)
        assert values[0] == f"{avg:.2f}" and values[4] == f"{lo:.2f}", values  # avg, min
        assert values[-1] == "60"  # receive-side endpoint-seconds of that direction
    worst = mos_row("worst")  # each figure the worse direction's: B's lower MOS here
    assert worst[0] == f"{min(a for a, _ in by_group.values()):.2f}"
    assert worst[4] == f"{min(lo for _, lo in by_group.values()):.2f}" and worst[-1] == "120"
    charts = html.split('id="result-charts"', 1)[1].split("</div>", 1)[0]
    # The charts over time (each direction's average and the worst endpoint per second,
    # from the rollups in both storage modes) have lines of 20 points each.
    lines = [p.split('points="', 1)[1].split('"', 1)[0] for p in charts.split("<polyline")[1:]]
    assert lines and all(len(points.split()) == 20 for points in lines), lines
