"""`callmeter up --nats-nodes 3`, as a user starts it: the command itself, end to end.

It starts three JetStream nodes, PostgreSQL and the services in the foreground; every
stream must have 3 replicas on 3 distinct nodes; a real call runs to COMPLETED;
the node leading CALLMETER_EVENTS is killed (-9) and `callmeter up` restarts it on
its store and port, and the next run completes too; Ctrl-C leaves nothing running.
(tests/integration/test_nats_cluster.py kills leaders mid-run on the same cluster
module; this one checks the command wires it.)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from callmeter_common.procs import free_port
from callmeter_events import ALL_STREAMS
from tests.support.jobs import Job

pytestmark = pytest.mark.integration

KEY = "cluster-test-key"
RUN = {
    "name": "up with a NATS cluster",
    "duration_s": 3,
    "groups": [
        {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
    ],
}


async def _streams(url: str) -> dict[str, Any]:
    """Every stream's replica count, leader and peers, as JetStream reports them."""
    nc = await nats.connect(url.split(","), connect_timeout=5)
    try:
        js = nc.jetstream(timeout=5)
        out = {}
        for stream in ALL_STREAMS:
            info = await js.stream_info(stream.name)
            assert info.cluster is not None, stream.name
            peers = [r.name for r in info.cluster.replicas or []]
            out[stream.name] = (info.config.num_replicas, info.cluster.leader, peers)
        return out
    finally:
        await nc.close()


def _node_name(cmdline: list[str]) -> str | None:
    """A nats-server's node name (`-n NAME`); None for any other process."""
    if not cmdline or not cmdline[0].endswith("nats-server") or "-n" not in cmdline:
        return None
    return cmdline[cmdline.index("-n") + 1]


def _completed_run(api: httpx.Client) -> dict[str, Any]:
    test = api.post("/api/v1/tests", json=RUN)
    assert test.status_code == 201, test.text
    run = api.post(f"/api/v1/tests/{test.json()['id']}/runs")
    assert run.status_code == 202, run.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        got = api.get(f"/api/v1/runs/{run.json()['id']}")
        if got.status_code == 200 and got.json()["status"] in ("COMPLETED", "FAILED"):
            return dict(got.json())
        time.sleep(0.5)
    raise TimeoutError("the run did not end in 90 s")


def test_callmeter_up_with_three_nats_nodes() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="callmeter-up-cluster-"))  # PostgreSQL may run as nobody
    port = free_port()
    log = tmp / "up.log"
    env = {**os.environ, "CALLMETER_API_KEYS": KEY}
    for name in ("CALLMETER_NATS_URL", "CALLMETER_DATABASE_URL", "CALLMETER_STREAM_REPLICAS"):
        env.pop(name, None)  # `up` starts its own servers
    argv = [str(Path(sys.executable).parent / "callmeter"), "up", "--nats-nodes", "3"]
    argv += ["--port", str(port), "--data-dir", str(tmp / "data")]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    job = Job(proc, log, port, "callmeter up --nats-nodes 3")
    try:
        job.wait_up(timeout=180)
        found = re.search(r"NATS (\S+) \(streams x(\d+)\)", job.output())
        assert found, job.output()
        url, replicas = found[1], int(found[2])
        assert replicas == 3 and len(url.split(",")) == 3, found[0]
        streams = asyncio.run(_streams(url))
        for name, (count, leader, peers) in streams.items():
            assert count == 3 and len({leader, *peers}) == 3, (name, count, leader, peers)

        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        first = _completed_run(api)
        assert first["status"] == "COMPLETED", first
        assert {e["outcome"] for e in first["endpoints"]} == {"SUCCESS"}, first["endpoints"]

        # kill -9 the node leading the event log: `up` must bring it back on its port.
        _, leader, _ = streams["CALLMETER_EVENTS"]
        node = next(p for p in job.processes() if _node_name(p.cmdline()) == leader)
        os.kill(node.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while f"{leader} exited" not in job.output() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert re.search(rf"{leader} exited \(-9\); restarted on port \d+", job.output()), (
            job.output()
        )
        second = _completed_run(api)
        assert second["status"] == "COMPLETED", second
        assert {e["outcome"] for e in second["endpoints"]} == {"SUCCESS"}, second["endpoints"]
        job.ctrl_c()
    finally:
        job.kill()
        shutil.rmtree(tmp, ignore_errors=True)
