"""A run survives losing NATS nodes: a 3-node JetStream cluster, streams with 3 replicas.

Mid-run the node leading CALLMETER_METRICS is killed (-9) and started again, then
the node leading CALLMETER_EVENTS. The run still completes with every endpoint
SUCCESS; every sample the workers published is stored exactly once (rows counted
against the samples in the stream); no decision is taken twice; a restarted node
catches up with its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator

import nats
import orjson
import psycopg
import pytest
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_common.nats_cluster import NatsCluster, start_nats_cluster
from callmeter_events import EVENTS, METRICS, metrics_for_run, run_events
from callmeter_vocabulary.sample import decode_batch
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

RUN = {
    "name": "cluster failover",
    "duration_s": 25,
    "buildup_s": 1,
    "groups": [
        {"name": "A", "endpoints": 4, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 4, "codecs": ["PCMU"]},
    ],
}
# Decisions the control services take once per run or once per endpoint.
ONCE_PER_RUN = {"RunCreated", "RunQueued", "RunDispatching", "RunStarted", "RunCompleted"}
ONCE_PER_ENDPOINT = {"EndpointAssigned", "EndpointFinished"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    nodes = start_nats_cluster(tmp_path_factory.mktemp("nats-cluster"), 3)
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def database_url(own_database: str) -> str:
    return own_database  # this platform's NATS is not the shared one: nor its database


@pytest.fixture(scope="module")
def clustered(
    tmp_path_factory: pytest.TempPathFactory, cluster: NatsCluster, database_url: str
) -> Iterator[TestPlatform]:
    p = TestPlatform(tmp_path_factory.mktemp("clustered"), cluster.url, database_url)
    p.stream_replicas = 3
    p.start_services()
    try:
        p.wait_for_api()
        p.wait_workers(1)
        _warm_up(p)
        yield p
    finally:
        p.stop()


def _warm_up(p: TestPlatform, timeout: float = 60) -> None:
    """One short run to completion: on a cluster just formed, the scheduler's fold of
    the workers' stream can trail the API's (its consumer is recreated when the first
    one finds no leader yet), and a run it sees no worker for is rejected."""
    deadline = time.monotonic() + timeout
    warm = {"name": "warm-up", "duration_s": 1, "groups": [{"name": "W", "endpoints": 1}]}
    while True:
        run = p.wait_status(p.run_test(warm), {"COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"})
        if run["status"] == "COMPLETED":
            return
        assert time.monotonic() < deadline, run["history"]
        time.sleep(1)


async def _leader(url: str, stream: str, other_than: str = "") -> str:
    bus = await Bus.connect(url, "test-cluster")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.Error):
                info = await bus.nc.jetstream(timeout=1).stream_info(stream)
                if info.cluster and info.cluster.leader not in (None, other_than):
                    return info.cluster.leader
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{stream} has no leader")
    finally:
        await bus.close()


async def _replica_state(url: str, stream: str, node: str) -> tuple[bool, int, int]:
    """(current, lag) of `node`'s replica of `stream`, and the stream's replica count."""
    bus = await Bus.connect(url, "test-cluster")
    try:
        info = await bus.nc.jetstream(timeout=1).stream_info(stream)
        assert info.cluster is not None
        peers = {r.name: r for r in info.cluster.replicas or []}
        if info.cluster.leader == node:
            return True, 0, info.config.num_replicas or 0
        peer = peers.get(node)
        if peer is None:
            return False, -1, info.config.num_replicas or 0
        return bool(peer.current), int(peer.lag or 0), info.config.num_replicas or 0
    finally:
        await bus.close()


def _wait_caught_up(cluster: NatsCluster, stream: str, node: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    state: tuple[bool, int, int] = (False, -1, 0)
    while time.monotonic() < deadline:
        try:
            state = asyncio.run(_replica_state(cluster.url, stream, node))
        except nats.errors.Error:  # the stream electing a leader: ask again
            state = (False, -1, 0)
        if state[0] and state[1] == 0:
            return
        time.sleep(0.25)
    raise AssertionError(f"{node} did not catch up with {stream}: (current, lag, R) = {state}")


async def _stream_contents(url: str, stream: str, subject: str) -> list[bytes]:
    """Every message of `stream` on `subject`, read with a throwaway ordered consumer."""
    bus = await Bus.connect(url, "test-cluster")
    out: list[bytes] = []
    try:
        sub = await bus.js.subscribe(
            subject,
            stream=stream,
            ordered_consumer=True,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
        )
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except TimeoutError:
                return out
            out.append(msg.data)
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await bus.close()


def _kill_leader(cluster: NatsCluster, stream: str) -> str:
    leader = asyncio.run(_leader(cluster.url, stream))
    cluster.kill(leader)
    return leader


def _restart_when_replaced(cluster: NatsCluster, stream: str, node: str) -> float:
    """Wait for the stream's new leader, start `node` again, wait until it caught up;
    the seconds the stream took to elect its new leader."""
    t0 = time.monotonic()
    assert asyncio.run(_leader(cluster.url, stream, other_than=node)) != node
    elected = time.monotonic() - t0
    time.sleep(1)  # the run goes on with two nodes
    cluster.start(node)
    cluster.wait_ready()
    _wait_caught_up(cluster, stream, node)
    return elected


def test_a_run_survives_killing_stream_leaders(
    clustered: TestPlatform, cluster: NatsCluster, database_url: str
) -> None:
    assert asyncio.run(_replica_state(cluster.url, METRICS.name, "nats-1"))[2] == 3
    run_id = clustered.run_test(RUN)
    run = clustered.wait_status(run_id, {"RUNNING", "CANNOT_RUN_FOR_NOW"}, timeout=60)
    assert run["status"] == "RUNNING", run["history"]
    time.sleep(3)  # calls up, samples flowing

    killed, elections = [], []
    for stream in (METRICS.name, EVENTS.name):
        killed.append(_kill_leader(cluster, stream))
        _, live = clustered.request("GET", f"/api/v1/runs/{run_id}")
        assert live["status"] == "RUNNING", f"the {stream} leader was to die mid-run"
        elections.append(_restart_when_replaced(cluster, stream, killed[-1]))

    run = clustered.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=120)
    assert run["status"] == "COMPLETED", run
    outcomes = {e["id"]: e["outcome"] for e in run["endpoints"]}
    assert outcomes == {f"{g}-{i}": "SUCCESS" for g in "AB" for i in range(1, 5)}, outcomes
    # No status decision twice in the read model.
    assert [h["status"] for h in run["history"]] == ["PENDING", "QUEUED", "RUNNING", "COMPLETED"]

    # Every decision is in the log once, despite publishes retried across leader changes.
    events = [
        orjson.loads(d)
        for d in asyncio.run(_stream_contents(cluster.url, EVENTS.name, run_events(run_id)))
    ]
    per_run = Counter(e["type"] for e in events if e["type"] in ONCE_PER_RUN)
    assert per_run == dict.fromkeys(ONCE_PER_RUN, 1), per_run
    per_endpoint = Counter(
        (e["type"], e["endpoint_id"]) for e in events if e["type"] in ONCE_PER_ENDPOINT
    )
    assert sorted(per_endpoint.values()) == [1] * 16, per_endpoint

    # Every sample the workers published is in the stream once and in Postgres once.
    batches = asyncio.run(_stream_contents(cluster.url, METRICS.name, metrics_for_run(run_id)))
    # Batches are MessagePack (or JSON from older workers): read as ingest reads them.
    sent = [
        (s.endpoint_id, s.direction, s.seq) for b in map(decode_batch, batches) for s in b.samples
    ]
    assert len(sent) == len(set(sent)), "a sample was published twice"
    deadline = time.monotonic() + 30
    stored: list[tuple[str, str, int]] = []
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            stored = conn.execute(
                "SELECT endpoint_id, direction, count(*) FROM metric_samples WHERE run_id = %s"
                " GROUP BY endpoint_id, direction ORDER BY 1, 2",
                (run_id,),
            ).fetchall()
        if sum(n for *_, n in stored) >= len(sent):
            break
        time.sleep(0.5)
    expected = Counter((endpoint, direction) for endpoint, direction, _ in sent)
    assert {(e, d): n for e, d, n in stored} == dict(expected)
    # Each endpoint has samples for most of its call in both directions.
    assert len(expected) == 16 and min(expected.values()) >= RUN["duration_s"] // 2, expected
    print(
        f"cluster run: killed {killed} (new leaders after {elections[0]:.1f}, {elections[1]:.1f} s);"
        f" {len(sent)} samples sent = stored; {len(events)} events"
    )


def test_every_stream_has_three_current_replicas_after_the_restarts(
    clustered: TestPlatform, cluster: NatsCluster
) -> None:
    for stream in (EVENTS.name, METRICS.name):
        for node in ("nats-1", "nats-2", "nats-3"):
            _wait_caught_up(cluster, stream, node)
