"""Deleting runs leaves nothing behind: checked with raw SQL over every table that has a
run_id column and by reading every stream by the run's subjects.

A real run (pjsua2 calls through the platform) is deleted through the API, another
through the page's form; the retention setting's sweep removes finished runs and
keeps those in flight (own NATS and database: it looks at every run).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from callmeter_api.projector import Projector
from callmeter_cli.rebuild import rebuild
from callmeter_common.bus import Bus
from callmeter_events import EVENTS, METRICS, TRACES, MetricSample, SipMessage
from callmeter_storage import traces
from callmeter_storage.readmodels import RUNS
from tests.support.history import history

pytestmark = pytest.mark.integration

PAIR = {
    "name": "deletable",
    "duration_s": 3,
    "groups": [
        {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
    ],
}

# The tables are found independently of the code under test (information_schema, and
# partitions included): a table that holds run rows and is forgotten fails here.
RUN_TABLES = """SELECT table_name FROM information_schema.columns
WHERE column_name = 'run_id' AND table_schema = 'public'
  AND table_name IN (SELECT table_name FROM information_schema.tables
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE')"""


def rows_per_table(database_url: str, run_id: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(RUN_TABLES).fetchall()]
        return {
            t: conn.execute(f'SELECT count(*) FROM "{t}" WHERE run_id = %s', (run_id,)).fetchone()[
                0
            ]
            for t in tables
        }


async def in_streams(nats_url: str, run_id: str) -> dict[str, int]:
    """Messages of the run in each stream, counted by a consumer filtered on its subjects."""
    subjects = {
        EVENTS.name: f"callmeter.run.{run_id}.>",
        METRICS.name: f"callmeter.metrics.{run_id}.>",
        TRACES.name: f"callmeter.trace.{run_id}.>",
        "CALLMETER_DEADLETTER": f"callmeter.deadletter.*.callmeter.*.{run_id}.>",
    }
    bus = await Bus.connect(nats_url, "test-deletion")
    counts = {}
    try:
        for stream, subject in subjects.items():
            sub = await bus.js.pull_subscribe(subject, stream=stream)
            counts[stream] = (await sub.consumer_info()).num_pending
            await sub.unsubscribe()
    finally:
        await bus.close()
    return counts


def settled_run(platform, database_url: str) -> str:  # type: ignore[no-untyped-def]
    """A run that has completed, been evaluated and whose SIP messages are stored."""
    run_id = platform.run_test(PAIR)
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED", run
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, run = platform.request("GET", f"/api/v1/runs/{run_id}")
        counts = rows_per_table(database_url, run_id)
        if run.get("evaluation") is not None and counts["sip_messages"] > 0:
            return run_id
        time.sleep(0.3)
    raise TimeoutError(f"run {run_id} never settled: {run}, {counts}")


def test_a_deleted_run_leaves_nothing_in_any_table_or_stream(platform, nats_server, database_url):  # type: ignore[no-untyped-def]
    kept, doomed = settled_run(platform, database_url), settled_run(platform, database_url)
    before = rows_per_table(database_url, doomed)
    for table in ("metric_samples", "sip_messages", "runs", "endpoints", "call_timings"):
        assert before[table] > 0, (table, before)
    streams = asyncio.run(in_streams(nats_server.url, doomed))
    assert streams[EVENTS.name] > 0 and streams[METRICS.name] > 0 and streams[TRACES.name] > 0

    # The ladder is read from PostgreSQL, not from the TRACES buffer.
    _, page = platform.get_html(f"/runs/{doomed}/endpoints/A-1")
    assert "INVITE" in page

    status, _ = platform.request("DELETE", f"/api/v1/runs/{doomed}")
    assert status == 204
    assert platform.request("GET", f"/api/v1/runs/{doomed}")[0] == 404
    assert set(rows_per_table(database_url, doomed).values()) == {0}
    assert set(asyncio.run(in_streams(nats_server.url, doomed)).values()) == {0}

    # Only that run: the other keeps its rows and events.
    others = rows_per_table(database_url, kept)
    assert others["metric_samples"] > 0 and others["sip_messages"] > 0 and others["runs"] == 1
    assert asyncio.run(in_streams(nats_server.url, kept))[EVENTS.name] > 0

    # A rebuild from sequence 1 does not bring it back.
    rebuild(nats_server.url, database_url)
    assert rows_per_table(database_url, doomed)["runs"] == 0
    assert rows_per_table(database_url, kept)["runs"] == 1

    # From the run page: the form deletes and lands on the test's page.
    status, html = platform.get_html(f"/runs/{kept}")
    assert 'id="delete-run"' in html
    test_id = platform.request("GET", f"/api/v1/runs/{kept}")[1]["test_id"]
    form = urllib.request.Request(
        f"{platform.base}/runs/{kept}/delete", b"", platform.auth, method="POST"
    )
    with urllib.request.urlopen(form, timeout=30) as resp:  # follows the 303
        assert resp.status == 200 and resp.url.endswith(f"/tests/{test_id}")
    assert set(rows_per_table(database_url, kept).values()) == {0}
    assert set(asyncio.run(in_streams(nats_server.url, kept)).values()) == {0}


def test_a_run_in_flight_cannot_be_deleted(platform):  # type: ignore[no-untyped-def]
    run_id = platform.run_test({**PAIR, "duration_s": 30})
    platform.wait_status(run_id, {"RUNNING"}, timeout=60)
    status, body = platform.request("DELETE", f"/api/v1/runs/{run_id}")
    assert status == 409 and body["error"]["code"] == "run_active"
    platform.request("POST", f"/api/v1/runs/{run_id}/stop")
    platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=60)


async def projected_history(own_bus: Bus, own_db: str) -> datetime:
    """tests.support.history's runs (r1, r2, r3, r5 finished; r4, r6 in flight) in the
    read models, r1 and r4 with a sample and a SIP message; returns when they were made."""
    log = history()
    for event in log:
        await own_bus.publish(event)
    now = datetime.now(UTC)
    for run_id in ("r1", "r4"):  # measured data of a finished run and of one in flight
        await own_bus.publish(
            MetricSample(
                run_id=run_id,
                endpoint_id="A-1",
                direction="recv",
                seq=1,
                ts=now,
                metrics={"mos": 4.1},
            )
        )
        message = SipMessage(
            run_id=run_id,
            endpoint_id="A-1",
            direction="out",
            ts=now,
            text="INVITE sip:b@h SIP/2.0\r\n\r\n",
        )
        await own_bus.publish(message)
        with psycopg.connect(own_db) as conn:
            traces.write(conn, [message])
    last = await own_bus.last_seq(EVENTS.name)
    projector, stop = Projector(own_bus, own_db, retry_s=0.1), asyncio.Event()
    await projector.start()
    tasks = projector.tasks(stop)
    assert await projector.wait_for_position(RUNS, last, 20)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return now


async def test_retention_removes_finished_runs_whole_and_keeps_runs_in_flight(
    own_bus: Bus, own_db: str, own_nats
):  # type: ignore[no-untyped-def]
    from callmeter_storage.retention import sweep

    now = await projected_history(own_bus, own_db)
    assert await sweep(own_bus, own_db, retention_days=0, now=now + timedelta(days=999)) == []
    assert rows_per_table(own_db, "r1")["runs"] == 1  # 0 keeps everything

    # The finished runs are all older than 1 day seen from 2 days ahead.
    deleted = await sweep(own_bus, own_db, retention_days=1, now=now + timedelta(days=2))
    assert sorted(deleted) == ["r1", "r2", "r3", "r5"]
    for run_id in deleted:
        assert set(rows_per_table(own_db, run_id).values()) == {0}, run_id
        assert set((await in_streams(own_nats.url, run_id)).values()) == {0}, run_id
    for run_id in ("r4", "r6"):  # in flight: untouched
        assert rows_per_table(own_db, run_id)["runs"] == 1
        assert (await in_streams(own_nats.url, run_id))[EVENTS.name] > 0
    assert rows_per_table(own_db, "r4")["sip_messages"] == 1


async def test_probe_retention_deletes_judged_executions_runs_and_keeps_their_history(
    own_bus: Bus, own_db: str, own_nats
):  # type: ignore[no-untyped-def]
    """A probe's executions: r2 judged, r3 finished but not judged, r4 judged but in
    flight. Only r2's run goes; its judgement stays in the probe's history."""
    from callmeter_storage import probes
    from callmeter_storage.retention import sweep

    await projected_history(own_bus, own_db)
    with psycopg.connect(own_db) as conn:
        row = conn.execute(
            "SELECT (doc->>'finished_at')::timestamptz FROM runs WHERE run_id = 'r2'"
        )
        finished = row.fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO probes (probe_id, project, name, doc) VALUES ('p1', 'default', 'p', '{}')"
        )
        for slot, run_id in enumerate(("r2", "r3", "r4")):
            assert probes.claim_execution(conn, "p1", slot, run_id, slot - 1 if slot else None)
        for run_id in ("r2", "r4"):
            judged = {"health": "HEALTHY", "reason": "", "mos": 4.3, "probe_health": "HEALTHY"}
            probes.record(conn, run_id, judged | {"post_dial_delay_ms": 80.0, "success_pct": 100})

    # not yet 1 day old; then 0 keeps every run
    assert await sweep(own_bus, own_db, 0, now=finished + timedelta(hours=23), probe_days=1) == []
    assert await sweep(own_bus, own_db, 0, now=finished + timedelta(days=999), probe_days=0) == []
    deleted = await sweep(own_bus, own_db, 0, now=finished + timedelta(days=2), probe_days=1)
    assert deleted == ["r2"]
    counts = rows_per_table(own_db, "r2")
    assert counts.pop("probe_executions") == 1  # the judgement stays
    assert set(counts.values()) == {0}, counts
    assert set((await in_streams(own_nats.url, "r2")).values()) == {0}
    for run_id in ("r1", "r3", "r4", "r5"):  # not a probe's, not judged, in flight
        assert rows_per_table(own_db, run_id)["runs"] == 1, run_id
    with psycopg.connect(own_db) as conn:
        history = {h["run_id"]: h for h in probes.history(conn, "p1", 10)}
    assert history["r2"]["run_kept"] is False and history["r2"]["mos"] == 4.3
    assert history["r2"]["health"] == "HEALTHY"
    assert history["r3"]["run_kept"] is True and history["r4"]["run_kept"] is True
