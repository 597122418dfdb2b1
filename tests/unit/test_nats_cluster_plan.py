"""How `callmeter up --nats-nodes N` lays out its cluster, and how NATS URLs are split."""

from __future__ import annotations

from pathlib import Path

import pytest

from callmeter_common.bus import server_urls
from callmeter_common.nats_cluster import node_argv, plan_cluster


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
