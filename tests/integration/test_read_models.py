"""One writer for the read models: the forward-only position, the writer lock, and
API replicas under concurrent POSTs, including the writer's death."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from callmeter_common.bus import Bus
from callmeter_common.procs import free_port, wait_for_port
from callmeter_events import EndpointPhaseChanged, RunCreated, RunDispatching
from callmeter_events import TestDefinition as Definition
from callmeter_events import TestSaved as Saved
from callmeter_storage.migrations import migrate
from callmeter_storage.readmodels import (
    RUNS,
    TESTS,
    WRITER_LOCKS,
    ReadModels,
    Snapshot,
    stored_position,
    take_writer_lock,
    write_snapshot,
)
from tests.support.databases import create_database, drop_database
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration
BIG_RUN = 2_000  # endpoints of the run whose events load the API processes


def definition(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "duration_s": 3,
        "groups": [{"name": "A", "endpoints": 1, "codecs": ["PCMU"]}],
    }


@pytest.fixture
def url(postgres_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = create_database(postgres_server.url)
    migrate(url)
    yield url
    drop_database(url)


def test_the_stored_position_only_moves_forward(url: str) -> None:
    models = ReadModels()
    touched = []
    for seq, name in enumerate(("one", "two", "three"), start=1):
        saved = Saved(test_id=name, definition=Definition.model_validate(definition(name)))
        touched += models.fold(seq, saved)
    with psycopg.connect(url, autocommit=True) as conn:
        write_snapshot(conn, models.snapshot(touched, TESTS))
        assert stored_position(conn, TESTS) == 3
        # A writer whose fold is behind (position 2) would put an older state back.
        stale = models.snapshot([("one", None, None)], TESTS)
        renamed = Definition.model_validate(definition("stale"))
        old = Snapshot(TESTS, 2, [dataclasses.replace(stale.tests[0], definition=renamed)])
        with pytest.raises(psycopg.errors.CheckViolation, match="only move forward"):
            write_snapshot(conn, old)
        assert stored_position(conn, TESTS) == 3  # and nothing of that snapshot was written:
        assert conn.execute("SELECT name FROM tests WHERE test_id = 'one'").fetchone() == ("one",)
        with pytest.raises(psycopg.errors.CheckViolation):  # plain SQL is held to it too
            conn.execute("UPDATE projection_position SET seq = 1")
        write_snapshot(conn, stale)  # the same position again changes nothing
        assert stored_position(conn, TESTS) == 3


def test_one_session_holds_the_writer_lock_until_it_ends(url: str) -> None:
    first = psycopg.connect(url, autocommit=True)
    with psycopg.connect(url, autocommit=True) as second:
        assert take_writer_lock(first, RUNS) and not take_writer_lock(second, RUNS)
        assert take_writer_lock(second, TESTS)  # another projection: another lock
        first.close()  # as when the writing process dies: its session ends
        # (the server ends that backend a moment after the connection closes)
        deadline = time.monotonic() + 10
        while not take_writer_lock(second, RUNS):
            assert time.monotonic() < deadline, "the lock outlived its session"
            time.sleep(0.05)


def request(
    platform: TestPlatform, base: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """To `base`, one of the platform's API processes, with the platform's key."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **platform.auth}
    req = urllib.request.Request(base + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def writer_pids(url: str) -> list[int]:
    """Process ids of the API processes whose sessions hold the writer locks (one per
    projection), by the application name each writing connection carries."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.objid = ANY(%s) AND l.granted",
            (list(WRITER_LOCKS.values()),),
        ).fetchall()
    return [int(r[0].rsplit("-", 1)[1]) for r in rows]


def wait_for_writer(url: str, among: set[int], timeout: float = 20) -> int:
    """The one process holding both writer locks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = writer_pids(url)
        if len(pids) == 2:
            assert pids[0] == pids[1] and pids[0] in among, pids
            return pids[0]
        time.sleep(0.1)
    raise TimeoutError(f"no read-model writer among {among} after {timeout}s")


def test_replicas_one_writer_read_your_writes_under_concurrent_posts_and_takeover(
    tmp_path: Path, nats_server, url: str
) -> None:  # type: ignore[no-untyped-def]
    """Two API processes, two clients posting at once, one to each: every POST answers
    201 with the test it created, readable at once from the other replica; only one
    process holds the writer lock; when it is killed, the other takes over."""
    platform = TestPlatform(tmp_path / "apis", nats_server.url, url)
    second_port = free_port()
    try:
        platform.start_services(("api",))
        platform.start_replica("api", "api-2", CALLMETER_PORT=str(second_port))
        bases = [platform.base, f"http://127.0.0.1:{second_port}"]
        for base in bases:
            wait_for_port("127.0.0.1", int(base.rsplit(":", 1)[1]), 60)
        pids = {platform.procs["api"].pid: "api", platform.procs["api-2"].pid: "api-2"}
        writer = wait_for_writer(url, set(pids))

        def post_many(client: int, base: str, other: str, count: int, out: list[Any]) -> None:
            for n in range(count):
                name = f"client {client} test {n} {uuid.uuid4().hex[:6]}"
                status, body = request(platform, base, "POST", "/api/v1/tests", definition(name))
                got = request(platform, other, "GET", f"/api/v1/tests/{body.get('id')}")
                out.append((status, body, name, got[0]))

        results: list[Any] = []
        threads = [
            threading.Thread(target=post_many, args=(i, bases[i], bases[1 - i], 15, results))
            for i in (0, 1)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 30
        for status, body, name, other_status in results:
            assert status == 201, body
            assert body["definition"]["name"] == name and body["test_id"] == body["id"]
            assert other_status == 200  # stored: every replica reads it
        assert writer_pids(url) == [writer, writer]  # still the one writer

        # kill -9 the writer: the other replica takes over and POSTs keep working.
        os.killpg(writer, signal.SIGKILL)
        platform.procs.pop(pids[writer]).wait(10)
        survivor = next(p for p in pids if p != writer)
        base = bases[0] if pids[survivor] == "api" else bases[1]
        status, body = request(
            platform, base, "POST", "/api/v1/tests", definition("after takeover")
        )
        assert status == 201 and body["definition"]["name"] == "after takeover", body
        assert wait_for_writer(url, {survivor}) == survivor
    finally:
        platform.stop()


def test_posts_read_their_writes_while_a_big_run_floods_the_log(
    tmp_path: Path, nats_server, url: str
) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: two API processes, two clients posting tests at once, while a
    big run's events arrive (its plan touches every endpoint, then each endpoint
    changes phase). Each process folding and writing every endpoint row used to keep
    POSTs waiting past the read-your-writes wait (503 projection_lag); a test's read
    model now waits for test events only. Every POST answers 201 with its test
    within 5 s."""
    eps = [f"{g}-{i}" for g in "AB" for i in range(1, BIG_RUN // 2 + 1)]
    big = Definition.model_validate(
        {
            "name": "big",
            "duration_s": 60,
            "groups": [
                {"name": "A", "endpoints": BIG_RUN // 2, "codecs": ["PCMU"], "calls": "B"},
                {"name": "B", "endpoints": BIG_RUN // 2, "codecs": ["PCMU"]},
            ],
        }
    )
    run_id = f"big-{uuid.uuid4().hex[:6]}"
    platform = TestPlatform(tmp_path / "apis", nats_server.url, url)
    platform.extra_env["CALLMETER_PROJECTION_WAIT_S"] = "5"
    second_port = free_port()
    try:
        platform.start_services(("api",))
        platform.start_replica("api", "api-2", CALLMETER_PORT=str(second_port))
        bases = [platform.base, f"http://127.0.0.1:{second_port}"]
        for base in bases:
            wait_for_port("127.0.0.1", int(base.rsplit(":", 1)[1]), 60)

        async def flood() -> None:
            bus = await Bus.connect(nats_server.url, "test-flood")
            try:
                await bus.publish(RunCreated(run_id=run_id, test_id="t-big", definition=big))
                await bus.publish(
                    RunDispatching(run_id=run_id, worker_ids=["w1"], plan=dict.fromkeys(eps, "w1"))
                )
                await bus.publish_many(
                    [
                        EndpointPhaseChanged(run_id=run_id, endpoint_id=e, phase=phase)
                        for phase in ("REGISTERED", "CALLING", "INCALL")
                        for e in eps
                    ]
                )
            finally:
                await bus.close()

        flooding = threading.Thread(target=asyncio.run, args=(flood(),))
        flooding.start()
        results: list[Any] = []

        def post_while_flooding(client: int) -> None:
            n = 0
            while flooding.is_alive() or n < 3:
                name = f"under load {client}-{n}"
                status, body = request(
                    platform, bases[client], "POST", "/api/v1/tests", definition(name)
                )
                results.append((status, body, name))
                n += 1

        clients = [threading.Thread(target=post_while_flooding, args=(i,)) for i in (0, 1)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        flooding.join()
        assert len(results) >= 6
        for status, body, name in results:
            assert status == 201 and body["definition"]["name"] == name, body
    finally:
        platform.stop()


def test_events_that_change_no_row_move_the_stored_position_about_once_a_second(
    tmp_path: Path, nats_server, url: str
) -> None:  # type: ignore[no-untyped-def]
    """A rate group's call records change no row; each 50 ms burst of them was a write
    (a transaction, and a NOTIFY to every API process). Now the writer stores such a
    position at most once a second, and the last one still reaches storage."""
    from datetime import UTC, datetime

    from callmeter_events import CallRecorded
    from callmeter_storage.readmodels import CHANNEL

    run_id = f"trickle-{uuid.uuid4().hex[:6]}"
    platform = TestPlatform(tmp_path / "api", nats_server.url, url)
    seconds, per_s = 3.0, 40
    try:
        platform.start_services(("api",))
        wait_for_port("127.0.0.1", int(platform.base.rsplit(":", 1)[1]), 60)
        listen = psycopg.connect(url, autocommit=True)
        listen.execute(f"LISTEN {CHANNEL}")

        async def trickle() -> tuple[int, int]:
            bus = await Bus.connect(nats_server.url, "test-trickle")
            try:
                created = RunCreated(
                    run_id=run_id, test_id="t", definition=Definition(**definition("t"))
                )
                first = await bus.publish(created)
                at, last = datetime(2026, 12, 2, tzinfo=UTC), 0
                for k in range(int(seconds * per_s)):
                    record = CallRecorded(
                        run_id=run_id, endpoint_id="A-1", seq=k, attempted_at=at, outcome="SUCCESS"
                    )
                    last = await bus.publish(record)
                    await asyncio.sleep(1 / per_s)
                return first, last
            finally:
                await bus.close()

        began = time.monotonic()
        first, last = asyncio.run(trickle())
        # the trickle's real length: on a busy machine its publishes take longer than
        # `seconds`, and a write a second over a longer trickle is still what is asked
        took = time.monotonic() - began
        deadline, stored = time.monotonic() + 15, 0
        while stored < last and time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                stored = stored_position(conn, RUNS)
            time.sleep(0.1)
        assert stored >= last  # nothing held back for good
        # (the API first catches up on earlier tests' events in the shared stream: only
        # the writes from this run's creation on are counted)
        writes = [
            n.payload
            for n in listen.notifies(timeout=0.5)
            if n.payload.startswith(RUNS) and int(n.payload.rsplit(":", 1)[1]) >= first
        ]
        listen.close()
        # the run's creation, then position-only writes about once a second (not ~60)
        assert 2 <= len(writes) <= max(seconds, took) + 3, (took, writes)
    finally:
        platform.stop()
