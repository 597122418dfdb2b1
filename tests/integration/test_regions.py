"""Workers on separate "hosts": two network namespaces (eu, us) on a bridge the test makes.

NATS listens on the bridge's address; scheduler, dispatcher, ingest and the API run
on the host side; one worker runs inside each namespace (`--region eu`, `--region
us`), advertising the address of its route to NATS, i.e. its namespace's address.
SIP and RTP between the groups cross the veths; the SIP messages carry the
namespaces' addresses in Contact and SDP; the veth counters see the RTP. Cutting
one namespace's link mid-run loses that region's endpoints (WORKER_LOST) while the
other region's calls complete.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from nats.js import api

from callmeter_common.bus import Bus
from callmeter_common.procs import free_port, spawn, stop_group, wait_for_port
from callmeter_common.servers import Server, nats_binary
from callmeter_events import TRACES, traces_for_run
from tests.support.netns import Lab, NetnsUnavailable
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

WORKER_ARGV = ["-m", "callmeter_cli.main", "worker"]  # `callmeter worker`


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        try:
            lab.setup(["eu", "us"])
        except NetnsUnavailable as exc:
            pytest.skip(f"network namespaces: {exc}")
        yield lab
    finally:
        lab.teardown()
    assert lab.leftovers() == [], "teardown left links or namespaces behind"


@pytest.fixture(scope="module")
def bridge_nats(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """NATS on the bridge's address: reachable from the host side and both namespaces."""
    data = tmp_path_factory.mktemp("bridge-nats")
    port = free_port()
    argv = [nats_binary(), "-js", "-sd", str(data / "store"), "-a", lab.gateway, "-p", str(port)]
    proc = spawn(argv, data / "nats.log")
    try:
        wait_for_port(lab.gateway, port)
        yield f"nats://{lab.gateway}:{port}"
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def database_url(own_database: str) -> str:
    return own_database  # this platform's NATS is not the shared one: nor its database


@pytest.fixture(scope="module")
def regions(
    lab: Lab, bridge_nats: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestPlatform]:
    import sys

    p = TestPlatform(tmp_path_factory.mktemp("regions"), bridge_nats, database_url)
    p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
    try:
        for region, host in lab.hosts.items():
            argv = host.exec_argv(sys.executable, *WORKER_ARGV, "--region", region)
            argv += ["--worker-id", f"w-{region}"]
            p.procs[f"w-{region}"] = spawn(
                argv, p.data_dir / f"w-{region}.log", env={**p.env, "CALLMETER_HEARTBEAT_S": "1"}
            )
        p.wait_for_api()
        p.wait_workers(2, timeout=60)
        yield p
    finally:
        p.stop()


def _traces(url: str, run_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        bus = await Bus.connect(url, "test-regions")
        out: list[dict[str, Any]] = []
        try:
            sub = await bus.js.subscribe(
                traces_for_run(run_id),
                stream=TRACES.name,
                ordered_consumer=True,
                config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
            )
            while True:
                try:
                    msg = await sub.next_msg(timeout=2)
                except TimeoutError:
                    return out
                out.append(orjson.loads(msg.data))
                if msg.metadata.num_pending == 0:
                    return out
        finally:
            await bus.close()

    return asyncio.run(read())


def _sent_packets(database_url: str, run_id: str, group: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(packets), 0) FROM metric_samples"
            " WHERE run_id = %s AND direction = 'send' AND endpoint_id LIKE %s",
            (run_id, f"{group}-%"),
        ).fetchone()
    assert row is not None
    return int(row[0])


CROSS = {
    "name": "eu calls us",
    "duration_s": 6,
    "groups": [
        {
            "name": "A",
            "endpoints": 2,
            "codecs": ["PCMU"],
            "calls": "B",
            "region": "eu",
            "workers": ["w-eu"],
        },
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"], "region": "us", "workers": ["w-us"]},
    ],
}


def test_eu_calls_us_across_the_veths(
    regions: TestPlatform, lab: Lab, bridge_nats: Server, database_url: str
) -> None:
    eu, us = lab.hosts["eu"], lab.hosts["us"]
    before = {name: host.rx_tx_packets() for name, host in lab.hosts.items()}
    run_id = regions.run_test(CROSS)
    run = regions.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED", run
    endpoints = {e["id"]: e for e in run["endpoints"]}
    assert {k: e["outcome"] for k, e in endpoints.items()} == dict.fromkeys(
        ["A-1", "A-2", "B-1", "B-2"], "SUCCESS"
    )
    # Explicit worker selection: each group on the worker it named.
    assert {k: e["worker_id"] for k, e in endpoints.items()} == {
        "A-1": "w-eu",
        "A-2": "w-eu",
        "B-1": "w-us",
        "B-2": "w-us",
    }
    # The receivers advertise their namespace's address, not 127.0.0.1.
    for b in ("B-1", "B-2"):
        assert f"@{us.address}:" in endpoints[b]["contact_uri"], endpoints[b]

    # On the wire (the SIP each endpoint sent): Contact and SDP carry the namespaces'.
    sent = [t for t in _traces(bridge_nats, run_id) if t["direction"] == "out"]
    invites = [t["text"] for t in sent if t["text"].startswith("INVITE ")]
    answers = [
        t["text"] for t in sent if t["text"].startswith("SIP/2.0 200") and "v=0" in t["text"]
    ]
    assert len(invites) >= 2 and len(answers) >= 2
    for text in invites:
        assert re.search(rf"^INVITE sip:[^@]+@{re.escape(us.address)}:", text), text[:200]
        assert re.search(rf"^Contact:.*@{re.escape(eu.address)}:", text, re.M), text
        assert f"c=IN IP4 {eu.address}" in text
    for text in answers:
        assert re.search(rf"^Contact:.*@{re.escape(us.address)}:", text, re.M), text
        assert f"c=IN IP4 {us.address}" in text
    assert "127.0.0.1" not in "".join(invites + answers)

    # RTP crossed the veths: each namespace's link carried at least the RTP its
    # endpoints say they sent (the kernel's counters against our samples).
    after = {name: host.rx_tx_packets() for name, host in lab.hosts.items()}
    for name, group in (("eu", "A"), ("us", "B")):
        from_ns = after[name][0] - before[name][0]
        rtp = _sent_packets(database_url, run_id, group)
        assert rtp >= 2 * 50 * (CROSS["duration_s"] - 2), rtp  # type: ignore[operator]
        assert from_ns >= rtp, (name, from_ns, rtp)


SPLIT = {
    "name": "two regions, one cut off",
    "duration_s": 12,
    "groups": [
        {"name": "EA", "endpoints": 2, "codecs": ["PCMU"], "calls": "EB", "region": "eu"},
        {"name": "EB", "endpoints": 2, "codecs": ["PCMU"], "region": "eu"},
        {"name": "UA", "endpoints": 2, "codecs": ["PCMU"], "calls": "UB", "region": "us"},
        {"name": "UB", "endpoints": 2, "codecs": ["PCMU"], "region": "us"},
    ],
}


def test_a_region_cut_off_mid_run_loses_its_endpoints_only(regions: TestPlatform, lab: Lab) -> None:
    run_id = regions.run_test(SPLIT)
    regions.wait_status(run_id, {"RUNNING"}, timeout=60)
    _wait_established(regions, run_id, 8)
    lab.hosts["us"].link_down()
    run = regions.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    outcomes = {e["id"]: (e["outcome"], e["worker_id"]) for e in run["endpoints"]}
    for group, worker in (("EA", "w-eu"), ("EB", "w-eu")):
        for i in (1, 2):
            assert outcomes[f"{group}-{i}"] == ("SUCCESS", worker), outcomes
    for group in ("UA", "UB"):
        for i in (1, 2):
            assert outcomes[f"{group}-{i}"] == ("WORKER_LOST", "w-us"), outcomes
    _, workers = regions.request("GET", "/api/v1/workers")
    status = {w["worker_id"]: w["status"] for w in workers["items"]}
    assert status["w-eu"] == "ONLINE" and status["w-us"] != "ONLINE", status
    regions.kill("w-us")  # cut off for good: its shutdown could not reach NATS anyway


def _wait_established(p: TestPlatform, run_id: str, count: int, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    phases: list[str] = []
    while time.monotonic() < deadline:
        _, run = p.request("GET", f"/api/v1/runs/{run_id}")
        phases = [e["phase"] for e in run["endpoints"]]
        if sum(ph == "INCALL" for ph in phases) >= count:
            return
        time.sleep(0.25)
    raise TimeoutError(f"not {count} endpoints in call after {timeout}s: {phases}")
