"""A real worker that finds itself overloaded says so: GeneratorOverloaded, the run
page's banner and the evaluation. The limit is forced low through settings (any CPU
used by endpoint hosts is "too much") rather than by melting the shared machine;
bench/overload.py measures the real limits."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

WORKER = "overload-w1"
PAIR = {
    "name": "overload",
    "duration_s": 4,
    "thresholds": ["mos_avg >= 1"],
    "groups": [
        {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
    ],
}


@pytest.fixture(scope="module")
def hot(
    tmp_path_factory: pytest.TempPathFactory, nats_server: Any, postgres_server: Any
) -> Iterator[TestPlatform]:
    p = TestPlatform(tmp_path_factory.mktemp("overload"), nats_server.url, postgres_server.url)
    p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
    try:
        p.start_worker(
            WORKER,
            CALLMETER_CAPACITY="2",
            CALLMETER_OVERLOAD_HOST_CPU="0",
            CALLMETER_OVERLOAD_SUSTAIN_S="1",
            # this test follows the host-CPU figure: a busy CI machine's loop lag (limit
            # 200 ms by default) must not be the reason found first
            CALLMETER_OVERLOAD_LOOP_LAG_MS="60000",
        )
        p.wait_for_api()
        p.wait_workers(1)
        yield p
    finally:
        p.stop()


def test_an_overloaded_worker_flags_the_run_and_its_evaluation(hot: TestPlatform) -> None:
    run_id = hot.run_test(PAIR)
    run = hot.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert run["status"] == "COMPLETED", run

    overload = run["generator_overloaded"]
    assert overload is not None, run
    assert overload["worker_id"] == WORKER
    assert overload["reason"].startswith("endpoint hosts used ")
    assert re.search(r"\(limit 0%\), \d+ s in a row$", overload["reason"]), overload
    assert overload["figures"]["host_cpu"] > 0  # measured from /proc, not made up
    assert set(overload["figures"]) == {
        "host_cpu",
        "loop_lag_ms",
        "late_hosts",
        "tx_expected",
        "tx_sent",
        "tx_deficit",
        "interval_s",
    }
    started, finished = run["started_at"], run["finished_at"]
    assert started <= overload["at"] <= finished

    deadline = time.monotonic() + 30
    while run["evaluation"] is None and time.monotonic() < deadline:
        time.sleep(0.25)
        _, run = hot.request("GET", f"/api/v1/runs/{run_id}")
    evaluation = run["evaluation"]
    assert evaluation is not None and evaluation["passed"]
    assert evaluation["generator_overloaded_at"] == overload["at"]
    assert evaluation["generator_overload"] == f"worker {WORKER}: {overload['reason']}"

    _, page = hot.get_html(f"/runs/{run_id}")
    assert 'id="generator-overloaded"' in page and "are not trustworthy" in page
    assert 'id="evaluation-overload"' in page
