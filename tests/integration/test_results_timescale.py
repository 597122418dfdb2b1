"""TimescaleDB mode's own parts, on a fresh database of the TimescaleDB server that
CALLMETER_TEST_TIMESCALE_URL names (`.ci/run` builds and starts one): the hypertable,
no continuous aggregates (and those of earlier versions dropped), series from the
rollups. The results, export and page tests run in this mode too
(tests/integration/test_results.py, `storage_mode`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from callmeter_events import MetricSample
from callmeter_ingest.writer import write_rows
from callmeter_storage import stats
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


def continuous_aggregates(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")
    return [r[0] for r in rows.fetchall()]


def test_a_new_database_gets_a_hypertable_and_no_continuous_aggregates(url: str) -> None:
    assert migrate(url) == "timescaledb"
    assert migrate(url) == "timescaledb"  # applying twice changes nothing
    with psycopg.connect(url, autocommit=True) as conn:
        hyper = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'metric_samples'"
        ).fetchone()
        assert hyper == (1,)
        assert continuous_aggregates(conn) == []  # one aggregation path: the rollups


def test_an_earlier_versions_continuous_aggregates_are_dropped(url: str) -> None:
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # As an earlier version left them: a per-second aggregate with a refresh policy.
        conn.execute(
            "CREATE MATERIALIZED VIEW metric_run_1s WITH (timescaledb.continuous) AS"
            " SELECT run_id, time_bucket(INTERVAL '1 second', time) AS second, avg(mos)"
            " FROM metric_samples GROUP BY run_id, second WITH NO DATA"
        )
        conn.execute(
            "SELECT add_continuous_aggregate_policy('metric_run_1s', INTERVAL '1 hour',"
            " INTERVAL '1 minute', INTERVAL '1 minute')"
        )
        conn.execute("DELETE FROM schema_migrations WHERE version = 25")
    assert migrate(url) == "timescaledb"
    with psycopg.connect(url, autocommit=True) as conn:
        assert continuous_aggregates(conn) == []
        jobs = conn.execute(
            "SELECT count(*) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchone()
        assert jobs == (0,)


def test_series_come_from_the_rollups_and_match_the_raw_samples(url: str) -> None:
    migrate(url)
    run_id = uuid.uuid4().hex[:12]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    with psycopg.connect(url, autocommit=True) as conn:
        assert write_rows(conn, samples(run_id, t0, 30)) == 60
        series = stats.run_series(conn, run_id, group="A")
        raw = conn.execute(
            "SELECT time, count(mos), avg(mos), min(mos), max(mos) FROM metric_samples"
            " WHERE run_id = %s AND direction = 'recv' GROUP BY time ORDER BY time",
            (run_id,),
        ).fetchall()
        assert len(series) == len(raw) == 30
        for point, (t, n, avg, lo, hi) in zip(series, raw, strict=True):
            mos = point["mos"]
            assert (point["t"], mos["n"], mos["min"], mos["max"]) == (t, n, lo, hi)
            assert mos["avg"] == pytest.approx(avg)
