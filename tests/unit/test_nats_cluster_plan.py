"""How `callmeter up --nats-nodes N` lays out its cluster, and how NATS URLs are split."""

from __future__ import annotations

from pathlib import Path

import pytest

from callmeter_common.bus import server_urls
from callmeter_common.nats_cluster import NatsCluster, node_argv, plan_cluster
from callmeter_common.servers import NATS_STUCK_PATTERN


def test_every_node_has_its_own_ports_and_store_and_routes_to_all(tmp_path: Path) -> None:
    nodes = plan_cluster(tmp_path, 3, ports=[4222, 4223, 4224])
    assert [n.name for n in nodes] == ["nats-1", "nats-2", "nats-3"]
    assert [n.url for n in nodes] == [f"nats://127.0.0.1:{p}" for p in (4222, 4223, 4224)]
    assert len({n.store for n in nodes}) == 3 and all(n.store.parent == tmp_path for n in nodes)
    assert len({n.cluster_port for n in nodes} | {4222, 4223, 4224}) == 6
    for node in nodes:
        argv = node_argv(node, nodes)
        assert argv[argv.index("-n") + 1] == node.name
        assert argv[argv.index("-sd") + 1] == str(node.store)
        assert argv[argv.index("--cluster") + 1] == f"nats://127.0.0.1:{node.cluster_port}"
        routes = argv[argv.index("--routes") + 1].split(",")
        assert routes == [f"nats://127.0.0.1:{n.cluster_port}" for n in nodes]


def test_a_cluster_needs_a_node(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nats nodes"):
        plan_cluster(tmp_path, 0)


def test_nats_url_lists_are_split_and_an_empty_one_is_named() -> None:
    assert server_urls("nats://a:4222, nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]
    with pytest.raises(ValueError, match="CALLMETER_NATS_URL"):
        server_urls(" , ")


def test_nodes_fsync_as_told_and_are_watched_for_a_stuck_store(tmp_path: Path) -> None:
    """`--nats-sync` reaches every node's config, and a node whose log says its store
    failed a write is restarted like the single embedded server (Server.supervise_once)."""
    nodes = plan_cluster(tmp_path, 3, sync="always")
    for node in nodes:
        node.write_config()
        assert 'sync_interval: "always"' in node.config.read_text()
        argv = node_argv(node, nodes)
        assert argv[argv.index("-c") + 1] == str(node.config)
        spec = NatsCluster(nodes).server_spec(node.name)
        assert spec.stuck_pattern == NATS_STUCK_PATTERN and spec.store == node.store
    with pytest.raises(ValueError, match="nats sync"):
        plan_cluster(tmp_path, 1, sync="sometimes")[0].write_config()
