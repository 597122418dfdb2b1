"""Live run pages pushed from the event stream, against a real API process."""

from __future__ import annotations

import asyncio
import queue
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from callmeter_common.bus import Bus
from callmeter_events import RunQueued, RunRejected
from callmeter_storage.migrations import migrate
from tests.support.databases import create_database, drop_database
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration


@pytest.fixture
def api(tmp_path: Path, nats_server, postgres_server) -> Iterator[TestPlatform]:  # type: ignore[no-untyped-def]
    """An API process alone, on a database of its own (no scheduler: runs stay PENDING
    until this test publishes what the scheduler would)."""
    url = create_database(postgres_server.url)
    migrate(url)
    platform = TestPlatform(tmp_path / "api", nats_server.url, url)
    try:
        platform.start_services(("api",))
        platform.wait_for_api()
        yield platform
    finally:
        platform.stop()
        drop_database(url)


def frames(api: TestPlatform, path: str, out: queue.Queue[tuple[str, str]]) -> None:
    """Read server-sent events (event, data) into `out` until the stream ends."""
    req = urllib.request.Request(api.base + path, headers=api.auth)
    with urllib.request.urlopen(req, timeout=60) as resp:
        event, data = "", []
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and event:
                out.put((event, "\n".join(data)))
                event, data = "", []
    out.put(("closed", ""))


def next_frame(out: queue.Queue[tuple[str, str]], timeout: float = 15) -> tuple[str, str]:
    return out.get(timeout=timeout)


def test_open_pages_get_the_runs_changes_pushed_and_close_when_it_ends(api, nats_server) -> None:  # type: ignore[no-untyped-def]
    status, test = api.request(
        "POST",
        "/api/v1/tests",
        {
            "name": "live",
            "duration_s": 3,
            "groups": [{"name": "A", "endpoints": 1, "codecs": ["PCMU"]}],
        },
    )
    assert status == 201, test
    status, run = api.request("POST", f"/api/v1/tests/{test['id']}/runs")
    assert status == 202 and run["status"] == "PENDING", run
    pages: list[queue.Queue[tuple[str, str]]] = [queue.Queue() for _ in range(3)]
    for out in pages:
        threading.Thread(
            target=frames, args=(api, f"/runs/{run['id']}/stream", out), daemon=True
        ).start()
    for out in pages:  # each page gets the run as it is at once
        event, html = next_frame(out)
        assert event == "live" and 'id="run-status"' in html and ">PENDING<" in html

    async def publish(*events: object) -> None:
        bus = await Bus.connect(nats_server.url, "test-live")
        try:
            for e in events:
                await bus.publish(e)  # type: ignore[arg-type]
        finally:
            await bus.close()

    # What the scheduler would publish: every open page is told, without asking.
    asyncio.run(publish(RunQueued(run_id=run["id"])))
    for out in pages:
        event, html = next_frame(out)
        assert event == "live" and ">QUEUED<" in html, html[:300]
    asyncio.run(publish(RunRejected(run_id=run["id"], reason="no workers for this test")))
    for out in pages:
        event, html = next_frame(out)
        assert event == "live" and ">CANNOT_RUN_FOR_NOW<" in html and "no workers" in html
        assert next_frame(out) == ("done", "finished")
        assert next_frame(out) == ("closed", "")
