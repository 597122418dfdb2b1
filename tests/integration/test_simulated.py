"""Simulated workers (`callmeter worker --simulate`) speak the workers' protocol to the
real scheduler, dispatcher, ingest and API, and their runs say they are simulated."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest

from callmeter_common.procs import spawn
from callmeter_common.servers import Server
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

FLEET = {
    "name": "simulated fleet",
    "duration_s": 4,
    "groups": [
        {"name": "A", "endpoints": 30, "codecs": ["PCMA"], "calls": "B"},
        {"name": "B", "endpoints": 30, "codecs": ["PCMA"]},
        {"name": "I", "endpoints": 4},  # neither calls nor is called: idle
    ],
}

# 4 calls/s for the 4 s run, held 1 s: arrivals at k / 4 s for k = 0..15, arrival k to
# caller k mod 8, so 16 calls, 2 per caller, none skipped (each is free again in time)
RATE = {
    "name": "simulated rate",
    "duration_s": 4,
    "groups": [
        {
            "name": "A",
            "endpoints": 8,
            "codecs": ["PCMU"],
            "calls": "B",
            "pattern": {"kind": "rate", "cps": 4, "hold_s": 1},
        },
        {"name": "B", "endpoints": 8, "codecs": ["PCMU"]},
    ],
}


@pytest.fixture(scope="module")
def simulated(
    tmp_path_factory: pytest.TempPathFactory, nats_server: Server, postgres_server: Server
) -> Iterator[TestPlatform]:
    p = TestPlatform(tmp_path_factory.mktemp("simulated"), nats_server.url, postgres_server.url)
    p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
    try:
        for i in (1, 2):
            argv = [
                sys.executable,
                "-m",
                "callmeter_cli.main",
                "worker",
                "--simulate",
                "--worker-id",
                f"sim-{i}",
                "--capacity",
                "40",
            ]
            p.procs[f"sim-{i}"] = spawn(argv, p.data_dir / f"sim-{i}.log", env=p.env)
        p.wait_for_api()
        p.wait_workers(2)
        yield p
    finally:
        p.stop()


def test_a_run_on_simulated_workers_completes_and_is_marked(
    simulated: TestPlatform, database_url: str
) -> None:
    run_id = simulated.run_test(FLEET)
    run = simulated.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert run["status"] == "COMPLETED", run
    assert run["simulated"] is True
    endpoints = run["endpoints"]
    assert len(endpoints) == 64 and {e["outcome"] for e in endpoints} == {"SUCCESS"}
    assert {e["worker_id"] for e in endpoints} == {"sim-1", "sim-2"}  # 64 > one's capacity
    # Every caller and receiver sent one sample per direction per second of its call,
    # read once ingest's watermark says all are stored (the run ends before the last batch).
    stored = simulated.wait_samples_stored(run_id)["samples_stored"]
    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "SELECT endpoint_id, direction, count(*), min(codec), max(packets)"
            " FROM metric_samples WHERE run_id = %s GROUP BY 1, 2",
            (run_id,),
        ).fetchall()
    assert len(counts) == 60 * 2
    assert {(n, codec, packets) for _, _, n, codec, packets in counts} == {(4, "PCMA", 50)}
    assert stored == 60 * 4  # the watermark counts receive samples
    # The run page says so, before any figure.
    status, page = simulated.get_html(f"/runs/{run_id}")
    assert status == 200 and 'id="simulated"' in page and "Simulated run" in page


def test_a_rate_group_on_simulated_workers_makes_its_calls_and_records_them(
    simulated: TestPlatform,
) -> None:
    """Simulated callers follow their group's pattern (the hosts' CallPlan) and report a
    call record per call, so rate runs load the control plane as real ones do."""
    run_id = simulated.run_test(RATE)
    run = simulated.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED", run
    deadline, body = time.monotonic() + 30, {"total": 0}
    while time.monotonic() < deadline and body["total"] < 16:
        _, body = simulated.request("GET", f"/api/v1/runs/{run_id}/calls?limit=1000")
        time.sleep(0.25)
    calls = body["calls"]
    assert body["total"] == 16 and {c["outcome"] for c in calls} == {"SUCCESS"}, calls
    assert sorted(Counter(c["endpoint_id"] for c in calls).values()) == [2] * 8
    # paced at the rate: 16 attempts over 15 / 4 = 3.75 s, not all at once (a busy
    # machine wakes the timers late by some 100 ms: the bounds tell paced from bunched)
    times = sorted(datetime.fromisoformat(c["attempted_at"]) for c in calls)
    assert 2.0 < (times[-1] - times[0]).total_seconds() < 6.0, times
    # each call held 1 s: one receive sample per call, counted by ingest's watermark
    assert simulated.wait_samples_stored(run_id)["samples_stored"] == 16
