"""TimescaleDB mode, against a real TimescaleDB server when one is reachable.

This machine cannot start TimescaleDB (the embedded PostgreSQL has no such
extension and there is no Docker engine), so the test runs only when
CALLMETER_TEST_TIMESCALE_URL points at an empty database on a TimescaleDB
server, e.g. `docker run -e POSTGRES_PASSWORD=x -p 5544:5432 timescale/timescaledb:latest-pg16`
and CALLMETER_TEST_TIMESCALE_URL=postgresql://postgres:x@127.0.0.1:5544/postgres.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from callmeter_events import MetricSample
from callmeter_events.metrics_catalogue import KEYS
from callmeter_ingest.writer import write_rows
from callmeter_storage import results, timescale
from callmeter_storage.migrations import migrate
from callmeter_storage.samples import to_row

URL = os.environ.get("CALLMETER_TEST_TIMESCALE_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.optional_external,
    pytest.mark.skipif(not URL, reason="set CALLMETER_TEST_TIMESCALE_URL to a TimescaleDB server"),
]


def test_timescale_mode_stores_and_summarises_samples():
    assert URL is not None
    # Migrating picks TimescaleDB mode and makes metric_samples a hypertable.
    assert migrate(URL) == "timescaledb"
    assert migrate(URL) == "timescaledb"  # applying twice changes nothing
    run_id = uuid.uuid4().hex[:12]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    samples = [
        MetricSample(
            run_id=run_id, endpoint_id=f"A-{e}", direction="recv", seq=s, ts=t0 + timedelta(seconds=s),
            metrics={**dict.fromkeys(KEYS), "mos": 4.0 + e / 10, "jitter_ms": 2.0, "packets": 50,
                     "packets_lost": 0, "fraction_lost": 0.0, "rtt_ms": 1.0, "codec": "PCMU"},
        )
        for e in (1, 2) for s in range(10)
    ]  # fmt: skip
    with psycopg.connect(URL, autocommit=True) as conn:
        hyper = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'metric_samples'"
        ).fetchone()[0]
        assert hyper == 1
        rows = [to_row(s) for s in samples]
        assert write_rows(conn, rows) == 20
        assert write_rows(conn, rows) == 0  # redelivered: nothing new
        summary = results.summary(conn, run_id)
        assert summary["samples"] == 20 and abs(summary["mos"] - 4.15) < 0.01
        conn.execute("CALL refresh_continuous_aggregate('metric_run_1s', NULL, NULL)")
        series = timescale.run_series(conn, run_id)
        assert len({row[0] for row in series}) == 10  # one bucket per second
