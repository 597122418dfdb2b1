"""TimescaleDB mode's own parts, on a fresh database of the TimescaleDB server that
CALLMETER_TEST_TIMESCALE_URL names (`.ci/run` builds and starts one): the hypertable,
the bounded refresh policies, real-time aggregation of the newest seconds and the
policy materialising the rest. The results, export and page tests run in this mode
too (tests/integration/test_results.py, `storage_mode`).

No test here calls `refresh_continuous_aggregate`: the refresh policy is the only
refresher, as in production, so no two refreshes of a window can overlap.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from callmeter_events import MetricSample
from callmeter_ingest.writer import write_rows
from callmeter_storage import stats, timescale
from callmeter_storage.migrations import migrate
from callmeter_storage.samples import to_row
from callmeter_vocabulary.metrics import KEYS
from tests.support.databases import NO_TIMESCALE, TIMESCALE_URL, create_database, drop_database

pytestmark = [
    pytest.mark.integration,
    # Under CALLMETER_REQUIRE_ALL=1 (.ci/run) this skip is a failure.
    pytest.mark.skipif(not TIMESCALE_URL, reason=NO_TIMESCALE),
]


@pytest.fixture
def url() -> Iterator[str]:
    url = create_database(str(TIMESCALE_URL))
    yield url
    drop_database(url)


def samples(run_id: str, t0: datetime, seconds: int) -> list[tuple[object, ...]]:
    """Two endpoints of group A, one receive sample per second; MOS differs by endpoint."""
    return [
        to_row(
            MetricSample(
                run_id=run_id,
                endpoint_id=f"A-{e}",
                direction="recv",
                seq=s,
                ts=t0 + timedelta(seconds=s),
                metrics={
                    **dict.fromkeys(KEYS),
                    "mos": 4.0 + e / 10,
                    "jitter_ms": 2.0 + s % 3,
                    "packets": 50,
                    "packets_lost": 0,
                    "fraction_lost": 0.0,
                    "rtt_ms": 1.0,
                    "codec": "PCMU",
                },
            )
        )
        for e in (1, 2)
        for s in range(seconds)
    ]


def refresh_jobs(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, dict[str, Any]]]:
    """{continuous aggregate: (job id, config)} of the refresh policies."""
    rows = conn.execute(
        "SELECT hypertable_name, job_id, config FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    ).fetchall()
    return {name: (job, config) for name, job, config in rows}


def materialised_seconds(conn: psycopg.Connection[Any], cagg: str, run_id: str) -> set[datetime]:
    """The buckets of a run stored in the aggregate's materialisation hypertable (what
    the refresh wrote, without the real-time part)."""
    schema, table = conn.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name"
        " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
        (cagg,),
    ).fetchone()  # type: ignore[misc]
    rows = conn.execute(
        f'SELECT second FROM "{schema}"."{table}" WHERE run_id = %s', (run_id,)
    ).fetchall()
    return {r[0] for r in rows}


def test_a_new_database_gets_a_hypertable_and_bounded_refresh_policies(url: str) -> None:
    assert migrate(url) == "timescaledb"
    assert migrate(url) == "timescaledb"  # applying twice changes nothing
    with psycopg.connect(url, autocommit=True) as conn:
        hyper = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'metric_samples'"
        ).fetchone()
        assert hyper == (1,)
        jobs = refresh_jobs(conn)
        assert set(jobs) == set(timescale.CAGGS)
        for _, config in jobs.values():
            assert config["start_offset"] == "01:00:00" and config["end_offset"] == "00:01:00"
            assert config["buckets_per_batch"] == 0
        assert timescale.ensure_refresh_policies(conn) == []  # as wanted: left alone
        # An installation of an earlier version had a 2-day window; start-up replaces it.
        conn.execute("SELECT remove_continuous_aggregate_policy('metric_run_1s')")
        conn.execute(
            "SELECT add_continuous_aggregate_policy('metric_run_1s', INTERVAL '2 days',"
            " INTERVAL '10 seconds', INTERVAL '30 seconds')"
        )
    assert migrate(url) == "timescaledb"
    with psycopg.connect(url, autocommit=True) as conn:
        config = refresh_jobs(conn)["metric_run_1s"][1]
        assert (config["start_offset"], config["buckets_per_batch"]) == ("01:00:00", 0)


def test_new_seconds_are_real_time_and_the_policy_materialises_older_ones(url: str) -> None:
    migrate(url)
    run_id = uuid.uuid4().hex[:12]
    now = datetime.now(UTC).replace(microsecond=0)
    older = now - timedelta(minutes=10)  # inside the policy's window, past its end
    recent = now - timedelta(seconds=15)  # newer than the window's end: real-time only
    with psycopg.connect(url, autocommit=True) as conn:
        assert write_rows(conn, samples(run_id, older, 20) + samples(run_id, recent, 10)) == 60
        # At once, before any refresh: the newest seconds from real-time aggregation.
        seconds = {row[0] for row in timescale.run_series(conn, run_id)}
        assert {recent + timedelta(seconds=s) for s in range(10)} <= seconds

        # Have the policy run now (the only refresher) and wait for a run that started
        # after the samples were stored to succeed.
        job = refresh_jobs(conn)["metric_run_1s"][0]
        asked = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT alter_job(%s, next_start => now())", (job,))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT last_run_started_at > %s AND last_successful_finish > last_run_started_at"
                " FROM timescaledb_information.job_stats WHERE job_id = %s",
                (asked, job),
            ).fetchone()
            if done and done[0]:
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the refresh policy (job {job}) did not run within 60 s")
        # It materialised the older seconds and left the newest to real-time aggregation.
        assert materialised_seconds(conn, "metric_run_1s", run_id) == {
            older + timedelta(seconds=s) for s in range(20)
        }
        # Either way, every second reads the same as the raw samples (and the rollups).
        series = [row for row in timescale.run_series(conn, run_id) if row[1] == "mos"]
        raw = conn.execute(
            "SELECT time, count(mos), avg(mos), min(mos), max(mos) FROM metric_samples"
            " WHERE run_id = %s AND direction = 'recv' GROUP BY time ORDER BY time",
            (run_id,),
        ).fetchall()
        assert len(series) == len(raw) == 30
        for (t, _, n, avg, lo, hi), (rt, rn, ravg, rlo, rhi) in zip(series, raw, strict=True):
            assert (t, n, lo, hi) == (rt, rn, rlo, rhi) and avg == pytest.approx(ravg)
        group = stats.run_series(conn, run_id, group="A")  # the per-group aggregate
        folded = stats.run_series(conn, run_id, group="A", bucket_s=2)  # the rollups
        assert len(group) == 30 and sum(p["mos"]["n"] for p in group) == 60
        assert sum(p["mos"]["n"] for p in folded) == 60
