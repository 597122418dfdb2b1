"""The walking skeleton, end to end: API -> scheduler -> dispatcher -> worker (real
pjsua2 calls, real RTP) -> metrics-ingest -> Postgres -> API."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from callmeter_cli.rebuild import rebuild
from callmeter_common.bus import Bus

SMOKE = {
    "name": "smoke",
    "duration_s": 5,
    "groups": [
        {"name": "A", "endpoints": 4, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 4, "codecs": ["PCMU"]},
    ],
}

pytestmark = pytest.mark.integration


def test_a_smoke_run_completes_with_good_audio(platform, database_url):  # type: ignore[no-untyped-def]
    # The user saves the smoke test and presses Run.
    run_id = platform.run_test(SMOKE)

    # The run goes through the lifecycle and ends COMPLETED.
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED", run
    assert [h["status"] for h in run["history"]] == ["PENDING", "QUEUED", "RUNNING", "COMPLETED"]

    # Every endpoint called or was called, and finished SUCCESS.
    outcomes = {e["id"]: e["outcome"] for e in run["endpoints"]}
    assert outcomes == {f"{g}-{i}": "SUCCESS" for g in "AB" for i in range(1, 5)}
    assert all(e["codec"] == "PCMU" for e in run["endpoints"])

    # Every endpoint stored at least 4 per-second samples per direction.
    platform.wait_samples_stored(run_id)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT endpoint_id, direction, count(*), avg(packet_rate_ps), min(mos),"
            " sum(packets_lost) FROM metric_samples WHERE run_id = %s"
            " GROUP BY endpoint_id, direction",
            (run_id,),
        ).fetchall()
        middle = conn.execute(
            "SELECT packet_rate_ps FROM metric_samples WHERE run_id = %s AND direction = 'recv'"
            " AND seq BETWEEN 1 AND 3",
            (run_id,),
        ).fetchall()
    assert len(rows) == 16
    for endpoint_id, _direction, count, _rate, _mos, _lost in rows:
        assert count >= 4, (endpoint_id, count)
    recv = [r for r in rows if r[1] == "recv"]
    # Real G.711 RTP: about 50 packets/s received, no loss, MOS above 4.
    assert all(45 <= r[0] <= 55 for r in middle), middle
    assert all(r[4] > 4.0 and r[5] == 0 for r in recv), recv

    # The API summary agrees.
    summary = run["summary"]
    assert summary["samples"] >= 32
    assert summary["mos"] > 4.0 and summary["fraction_lost"] == 0

    # Each side's SIP ladder is its own, even when caller and callee share a host process.
    def ladder(endpoint_id: str) -> list[tuple[str, str]]:
        _, detail = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/{endpoint_id}")
        sip = [e for e in detail["me"]["timeline"] if e["kind"] == "sip"]
        return [
            (
                e["direction"],
                e["label"].split(" ")[0]
                if not e["label"].startswith("SIP/")
                else e["label"].split(" ")[1],
            )
            for e in sip
        ]

    caller, callee = ladder("A-1"), ladder("B-1")
    assert caller[0] == ("out", "INVITE") and ("in", "200") in caller and ("out", "ACK") in caller
    assert callee[0] == ("in", "INVITE") and ("out", "200") in callee and ("in", "ACK") in callee

    # The HTML page shows the same run.
    status, html = platform.get_html(f"/runs/{run_id}")
    assert status == 200 and "COMPLETED" in html and "A-1" in html


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"groups": []}, "groups"),
        ({"duration_s": -5}, "duration_s"),
        ({"groups": [{"name": "A", "endpoints": 1, "calls": "Z"}]}, "groups.0.calls"),
        ({"groups": [{"name": "A", "endpoints": 0}]}, "groups.0.endpoints"),
    ],
)
def test_invalid_tests_are_rejected_with_the_field_named(platform, change, field):  # type: ignore[no-untyped-def]
    _, before = platform.request("GET", "/api/v1/tests")
    status, body = platform.request("POST", "/api/v1/tests", {**SMOKE, **change})
    assert status == 422
    assert body["error"]["field"] == field and field in body["error"]["message"]
    _, after = platform.request("GET", "/api/v1/tests")
    assert after == before  # nothing was created


def test_unknown_run_is_a_clear_404(platform):  # type: ignore[no-untyped-def]
    status, body = platform.request("GET", "/api/v1/runs/doesnotexist")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_read_models_rebuild_from_the_log_identically(platform, nats_server, database_url):  # type: ignore[no-untyped-def]
    run_id = platform.run_test({**SMOKE, "duration_s": 2})
    platform.wait_status(run_id, {"COMPLETED", "FAILED"})

    def views() -> list[list[tuple[object, ...]]]:
        with psycopg.connect(database_url) as conn:
            return [
                conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("tests", "runs", "endpoints")
            ]

    # Platform processes keep running (the run's RunEvaluated comes a moment after
    # COMPLETED): wait until the read models have folded the whole log, then compare.
    async def last_seq() -> int:
        bus = await Bus.connect(nats_server.url, "test")
        try:
            return await bus.last_seq("CALLMETER_EVENTS")
        finally:
            await bus.close()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, run = platform.request("GET", f"/api/v1/runs/{run_id}")
        with psycopg.connect(database_url) as conn:
            position = conn.execute("SELECT max(seq) FROM projection_position").fetchone()[0]
        if run.get("evaluation") is not None and position == asyncio.run(last_seq()):
            break
        time.sleep(0.2)
    before = views()
    rebuild(nats_server.url, database_url)
    after = views()
    assert len(before[1]) >= 1 and len(before[2]) >= 8
    assert after == before


def test_two_runs_with_the_same_endpoint_ids_share_a_worker(platform):  # type: ignore[no-untyped-def]
    """Every test has an A-1: two runs at once on one worker put endpoints with the same
    ids on the same endpoint host, and each must still be told apart."""
    # 2 endpoints per run: the second run's fit in the first run's host (4 per host).
    small = {
        **SMOKE,
        "duration_s": 3,
        "groups": [
            {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B"},
            {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
        ],
    }

    def completes(*run_ids: str) -> None:
        for run_id in run_ids:
            run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
            assert run["status"] == "COMPLETED", run
            outcomes = {e["id"]: e["outcome"] for e in run["endpoints"]}
            assert outcomes == {"A-1": "SUCCESS", "B-1": "SUCCESS"}, run_id

    # At once: each run on a host of its own (their SIP users a-1, b-1 are the same).
    completes(
        platform.run_test({**small, "name": "twin 1"}),
        platform.run_test({**small, "name": "twin 2"}),
    )
    # Then a third: it reuses a host that already ran an A-1 and a B-1.
    completes(platform.run_test({**small, "name": "twin 3"}))
