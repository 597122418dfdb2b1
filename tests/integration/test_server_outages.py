"""`callmeter up` supervises its servers: nats-server or postgres killed with SIGKILL
mid-run is restarted on the same data and port, the services reconnect, and the run
completes with every endpoint SUCCESS and every sample stored exactly once.

The platform here owns its embedded servers (as `callmeter up` does) and runs
`Platform.supervise` in a thread: nobody restarts anything by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from callmeter_common.bus import Bus
from callmeter_events import decode
from callmeter_events.metric_events import MetricBatch
from callmeter_events.streams import METRICS
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration
GRACE_S = 8


@pytest.fixture(scope="module")
def owned() -> Iterator[TestPlatform]:
    # Not under pytest's 0700 basetemp: postgres runs as an unprivileged user when root.
    data_dir = Path(tempfile.mkdtemp(prefix="callmeter-owned-"))
    p = TestPlatform(data_dir, "", "")
    p.ingest_processes = 1
    # A short overrun allowance, so an outage longer than it is quick to stage.
    p.extra_env |= {"CALLMETER_GRACE_S": str(GRACE_S), "CALLMETER_RECEIVER_WAIT_S": "5"}
    stop: list[bool] = []
    supervisor = threading.Thread(target=p.supervise, args=(stop,), daemon=True)
    try:
        p.start_servers()
        p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
        p.start_worker("w1", CALLMETER_CAPACITY="8")
        supervisor.start()
        p.wait_for_api()
        p.wait_workers(1)
        yield p
    finally:
        stop.append(True)
        if supervisor.is_alive():
            supervisor.join(10)
        p.stop()
        for server in reversed(p.servers):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def two_pairs(duration_s: float) -> dict[str, Any]:
    return {
        "name": "server restarts",
        "duration_s": duration_s,
        "groups": [{"name": "C", "endpoints": 2, "calls": "R"}, {"name": "R", "endpoints": 2}],
    }


def wait_in_call(p: TestPlatform, run_id: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, run = p.request("GET", f"/api/v1/runs/{run_id}")
        if run["phase_counts"].get("INCALL", 0) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{count} endpoints not in call after {timeout}s")


def server(p: TestPlatform, name: str) -> Any:
    return next(s for s in p.servers if s.spec.name == name)


async def published_samples(nats_url: str, run_id: str) -> Counter[tuple[str, str, int]]:
    """Every sample the workers' MetricBatches carry for the run, read back from JetStream."""
    bus = await Bus.connect(nats_url, "test")
    found: Counter[tuple[str, str, int]] = Counter()
    try:
        sub = await bus.js.pull_subscribe(
            f"callmeter.metrics.{run_id}.>", stream=METRICS.name, durable=None
        )
        while True:
            try:
                msgs = await sub.fetch(500, timeout=1)
            except TimeoutError:
                break
            for msg in msgs:
                event = decode(msg.data)
                assert isinstance(event, MetricBatch)
                for s in event.samples:
                    found[(s.endpoint_id, s.direction, s.seq)] += 1
                await msg.ack()
    finally:
        await bus.close()
    return found


def stored_samples(database_url: str, run_id: str) -> Counter[tuple[str, str, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT endpoint_id, direction, seq FROM metric_samples WHERE run_id = %s", (run_id,)
        ).fetchall()
    return Counter((e, d, s) for e, d, s in rows)


def rollup_sample_count(database_url: str, run_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n), 0) FROM rollup_endpoint"
            " WHERE run_id = %s AND metric = 'samples'",
            (run_id,),
        ).fetchone()
    return int(row[0]) if row else 0


def assert_completed_once(p: TestPlatform, run_id: str) -> None:
    run = p.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=120)
    assert run["status"] == "COMPLETED", run.get("reason")
    assert [h["status"] for h in run["history"]] == ["PENDING", "QUEUED", "RUNNING", "COMPLETED"]
    outcomes = {e["id"]: e["outcome"] for e in run["endpoints"]}
    assert outcomes == {e: "SUCCESS" for e in ("C-1", "C-2", "R-1", "R-2")}
    # Every sample published once is stored once: none lost, none twice.
    published = asyncio.run(published_samples(p.nats_url, run_id))
    deadline = time.monotonic() + 30
    while (stored := stored_samples(p.database_url, run_id)) != published:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert max(published.values()) == 1
    assert stored == published, (len(stored), len(published))
    # Each endpoint reported one sample a second per direction, with no gap in seq.
    for (endpoint, direction), seqs in by_stream(published).items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (endpoint, direction, seqs)
        assert len(seqs) >= 4, (endpoint, direction, seqs)
    # The rollups counted each once too (a redelivered batch folded twice would show here).
    recv = sum(1 for (_, d, _) in published if d == "recv")
    assert rollup_sample_count(p.database_url, run_id) in (recv, len(published))
    # No event twice in an endpoint's timeline.
    for endpoint in outcomes:
        _, detail = p.request("GET", f"/api/v1/runs/{run_id}/endpoints/{endpoint}")
        items = [json.dumps(t, sort_keys=True) for t in detail["me"]["timeline"]]
        assert items and len(items) == len(set(items)), detail["me"]["timeline"]


def by_stream(samples: Counter[tuple[str, str, int]]) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for endpoint, direction, seq in sorted(samples):
        out.setdefault((endpoint, direction), []).append(seq)
    return out


def kill_mid_run(
    p: TestPlatform,
    name: str,
    duration_s: float = 8,
    down_s: float = 0,
    while_down: Callable[[str], None] | None = None,
) -> str:
    run_id = p.run_test(two_pairs(duration_s=duration_s))
    wait_in_call(p, run_id, 4)
    time.sleep(1)  # some samples stored before the kill
    victim = server(p, name)
    before = victim.restarts
    victim.next_try = time.monotonic() + down_s  # the supervisor waits that long to restart
    os.kill(victim.proc.pid, signal.SIGKILL)
    if while_down is not None:
        while_down(run_id)
    deadline = time.monotonic() + 30
    while victim.restarts == before:
        assert time.monotonic() < deadline, f"{name} not restarted"
        time.sleep(0.1)
    return run_id


def test_nats_server_killed_mid_run_is_restarted_and_the_run_completes(owned: TestPlatform):
    port = server(owned, "nats-server").spec.port
    run_id = kill_mid_run(owned, "nats-server")
    assert owned.nats_url.endswith(f":{port}")  # same port, same store
    assert_completed_once(owned, run_id)


def test_postgres_killed_mid_run_is_restarted_and_the_run_completes(owned: TestPlatform):
    run_id = kill_mid_run(owned, "postgres")
    assert_completed_once(owned, run_id)


def test_a_nats_outage_longer_than_the_deadline_is_named_and_counted(owned: TestPlatform):
    # Budget: 4 s duration + 5 s receiver wait + 8 s grace = 17 s from the start; NATS is
    # down for 20 s from about 3 s in. Counted as an outage, the run still completes,
    # and no worker is declared lost for heartbeats the outage held back.
    def banner_while_down(run_id: str) -> None:
        deadline = time.monotonic() + 10
        while "NATS unreachable since" not in (page := owned.get_html(f"/runs/{run_id}")[1]):
            assert time.monotonic() < deadline, page
            time.sleep(0.5)
        assert 'id="degraded"' in page and "runs&#39; deadlines count the outage" in page

    run_id = kill_mid_run(owned, "nats-server", 4, down_s=20, while_down=banner_while_down)
    assert_completed_once(owned, run_id)
    assert 'id="degraded"' not in owned.get_html(f"/runs/{run_id}")[1]
    _, run = owned.request("GET", f"/api/v1/runs/{run_id}")
    assert len(run["outages"]) == 1, run["outages"]
    assert re.fullmatch(
        r"NATS unreachable from \d\d:\d\d:\d\d to \d\d:\d\d:\d\d", run["outages"][0]
    )
    _, workers = owned.request("GET", "/api/v1/workers")
    assert [w["status"] for w in workers["items"]] == ["ONLINE"]
    code, page = owned.get_html(f"/runs/{run_id}")
    assert code == 200 and f"Platform outage during this run: {run['outages'][0]}" in page


def test_supervisor_logs_say_what_was_restarted(owned: TestPlatform):
    log = Path(owned.data_dir / "nats.log").read_text()
    assert log.count("Server is ready") >= 2  # the restarted one used the same log


# --- health for orchestrators and operators ----------------------------------------------


def family(pid: int) -> list[int]:
    """A process and its children (postgres backends lead sessions of their own)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *children]


def readyz(p: TestPlatform) -> tuple[int, dict[str, dict[str, Any]]]:
    code, body = p.request("GET", "/readyz")
    return code, {c["name"]: c for c in body["checks"]}


def wait_ready(p: TestPlatform, want: int, timeout: float = 30) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        code, checks = readyz(p)
        if code == want or time.monotonic() > deadline:
            assert code == want, checks
            return checks
        time.sleep(0.3)


@pytest.mark.parametrize(("name", "check"), [("postgres", "postgres"), ("nats-server", "nats")])
def test_readyz_names_a_frozen_server_and_recovers(owned: TestPlatform, name: str, check: str):
    assert owned.request("GET", "/healthz") == (200, {"status": "alive"})
    wait_ready(owned, 200)
    frozen = family(server(owned, name).proc.pid)
    for pid in frozen:  # hung, not dead: the supervisor has nothing to restart
        os.kill(pid, signal.SIGSTOP)
    try:
        checks = wait_ready(owned, 503)
        assert not checks[check]["ok"], checks
        assert owned.request("GET", "/healthz")[0] == 200  # the process itself is fine
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    checks = wait_ready(owned, 200)
    assert all(c["ok"] for c in checks.values()), checks


def test_system_view_matches_the_servers_own_figures(owned: TestPlatform):
    if not owned.request("GET", "/api/v1/runs")[1]["items"]:  # run alone: make one
        owned.wait_status(owned.run_test(two_pairs(duration_s=2)), {"COMPLETED"}, timeout=60)
    code, system = owned.request("GET", "/api/v1/system")
    assert code == 200, system
    with psycopg.connect(owned.database_url) as conn:
        size, oldest = conn.execute(
            "SELECT pg_database_size(current_database()),"
            " (SELECT run_id FROM runs ORDER BY created_at LIMIT 1)"
        ).fetchone()
    db = system["database"]
    assert abs(db["database_bytes"] - size) <= size * 0.05
    assert db["oldest_run"]["run_id"] == oldest
    streams = {s["name"]: s for s in system["streams"]}
    metrics = asyncio.run(stream_state(owned.nats_url, METRICS.name))
    assert streams[METRICS.name]["messages"] == metrics.messages > 0
    assert streams[METRICS.name]["bytes"] == metrics.bytes
    assert dict(streams[METRICS.name]["consumers"])["metrics-ingest"] >= 0
    code, page = owned.get_html("/system")
    assert code == 200 and 'id="streams"' in page and "CALLMETER_METRICS" in page
    assert f'href="/runs/{oldest}"' in page


async def stream_state(nats_url: str, name: str) -> Any:
    bus = await Bus.connect(nats_url, "test")
    try:
        return (await bus.js.stream_info(name)).state
    finally:
        await bus.close()
