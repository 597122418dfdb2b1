"""The deployment files in infra/ are checked, offline, without a Docker engine or cluster.

Every Kubernetes manifest is validated against the Kubernetes OpenAPI schemas that
`kubernetes-validate` ships; the compose file against the compose spec's JSON schema
that `check-jsonschema` ships (vendor.compose-spec). Then what a schema cannot see:
the NATS cluster really is three routed JetStream nodes, every client lists them all,
and a host-network worker reaches NATS by an address that resolves on the host.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
K8S_FILES = sorted((INFRA / "k8s").glob("*.yaml"))
COMPOSE = INFRA / "docker-compose.yml"
K8S_VERSION = "1.33.0"  # a version current clusters run; the schemas ship in the package


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc) for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def k8s_resource(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in infra/k8s, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def nats_hosts(url_list: str) -> list[tuple[str, int]]:
    return [(u.hostname or "", u.port or 4222) for u in map(urlsplit, url_list.split(","))]


# --- schemas -------------------------------------------------------------------------


def test_there_are_manifests() -> None:
    names = {p.name for p in K8S_FILES}
    assert {"nats.yaml", "callmeter.yaml", "timescaledb.yaml"} <= names


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_manifest_is_valid(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
            pytest.fail(f"{path.name} {kind}/{name}: {err.message} at {list(err.path)}")


def test_compose_file_matches_the_compose_spec() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_compose_schema_check_can_fail(tmp_path: Path) -> None:
    """The validator rejects a compose file with a misspelt key (it is not a no-op)."""
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  api:\n    image: x\n    restrat: always\n")
    tool = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "restrat" in out.stdout + out.stderr


# --- what a schema cannot see: compose ------------------------------------------------


def test_compose_runs_a_three_node_routed_nats_cluster() -> None:
    services = compose()["services"]
    nodes = sorted(n for n, s in services.items() if str(s.get("image", "")).startswith("nats:"))
    assert nodes == ["nats-1", "nats-2", "nats-3"]
    for name in nodes:
        argv = services[name]["command"]
        assert argv[argv.index("--name") + 1] == name
        assert "--cluster" in argv and "--cluster_name" in argv
        routes = {u.hostname for u in map(urlsplit, argv[argv.index("--routes") + 1].split(","))}
        assert routes == set(nodes), f"{name} routes to {routes}"
    store_volumes = {v.split(":")[0] for n in nodes for v in services[n]["volumes"]}
    assert {"nats-1", "nats-2", "nats-3"} <= store_volumes, "one store per node"


def test_compose_clients_list_every_node_and_streams_are_r3() -> None:
    services = compose()["services"]
    published = {  # host port -> node, for clients on the host network
        int(p.split(":")[0]): n
        for n, s in services.items()
        for p in s.get("ports", [])
        if str(s.get("image", "")).startswith("nats:")
    }
    clients = {
        n: s for n, s in services.items() if "CALLMETER_NATS_URL" in s.get("environment", {})
    }
    assert {"scheduler", "dispatcher", "metrics-ingest", "api", "worker"} <= set(clients)
    for name, svc in clients.items():
        env = svc["environment"]
        assert env.get("CALLMETER_STREAM_REPLICAS") == "3", name
        url = re.sub(r"\$\{[A-Z_]+:-(.*)\}", r"\1", env["CALLMETER_NATS_URL"])  # the default
        hosts = nats_hosts(url)
        if svc.get("network_mode") == "host":
            # Compose service names do not resolve on the host network: the published ports.
            assert all(h == "127.0.0.1" for h, _ in hosts), f"{name}: {url}"
            assert sorted(published[p] for _, p in hosts) == ["nats-1", "nats-2", "nats-3"]
        else:
            assert sorted(h for h, _ in hosts) == ["nats-1", "nats-2", "nats-3"], name


def test_compose_uses_timescaledb_and_replicas() -> None:
    services = compose()["services"]
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert services["api"]["deploy"]["replicas"] >= 2
    assert services["metrics-ingest"]["deploy"]["replicas"] >= 2
    worker = services["worker"]
    assert worker["network_mode"] == "host"
    assert "ports" not in worker and "container_name" not in worker, "--scale worker=N"
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


# --- what a schema cannot see: Kubernetes ---------------------------------------------


def test_k8s_nats_is_a_three_replica_jetstream_statefulset() -> None:
    sts = k8s_resource("StatefulSet", "nats")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["volumeClaimTemplates"], "one store volume per node"
    conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "jetstream" in conf and "server_name: $POD_NAME" in conf
    headless = sts["spec"]["serviceName"]
    assert k8s_resource("Service", headless)["spec"]["clusterIP"] == "None"
    routes = set(re.findall(r"nats://(nats-\d)\." + headless + r":6222", conf))
    assert routes == {f"nats-{i}" for i in range(3)}


def test_k8s_clients_list_every_nats_pod_with_r3_streams() -> None:
    secret = k8s_resource("Secret", "callmeter")["stringData"]
    hosts = sorted(h for h, _ in nats_hosts(secret["CALLMETER_NATS_URL"]))
    assert hosts == [f"nats-{i}.nats-cluster" for i in range(3)]
    assert secret["CALLMETER_STREAM_REPLICAS"] == "3"
    db = urlsplit(secret["CALLMETER_DATABASE_URL"]).hostname
    assert k8s_resource("StatefulSet", "timescaledb")["spec"]["serviceName"] == db


def test_k8s_deployments() -> None:
    for name in ("callmeter-api", "callmeter-metrics-ingest"):
        assert k8s_resource("Deployment", name)["spec"]["replicas"] == 2
    for name in ("callmeter-scheduler", "callmeter-dispatcher"):
        spec = k8s_resource("Deployment", name)["spec"]
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    api = k8s_resource("Deployment", "callmeter-api")["spec"]["template"]["spec"]
    container = api["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_k8s_workers_use_the_host_network_and_still_resolve_cluster_names() -> None:
    workers = [
        d for _, d in k8s_docs() if d["kind"] == "Deployment" and "worker" in d["metadata"]["name"]
    ]
    assert workers
    for deployment in workers:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["CALLMETER_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        advertise = env["CALLMETER_ADVERTISE_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert advertise == "status.hostIP"
        low, high = map(int, env["CALLMETER_MEDIA_PORTS"]["value"].split("-"))
        assert 1024 < low < high <= 65535


# --- the README describes these files -------------------------------------------------


def test_infra_readme_names_each_file_and_only_files_that_exist() -> None:
    readme = (INFRA / "README.md").read_text()
    for path in [COMPOSE, *K8S_FILES]:
        assert path.relative_to(INFRA).as_posix() in readme, f"README misses {path.name}"
    for named in re.findall(r"`((?:k8s|nats|postgres|kamailio)/[^`]*)`", readme):
        assert (INFRA / named).exists(), f"README names {named}, which does not exist"


# --- every variable the files set is one a service reads -------------------------------


def _settings_names() -> set[str]:
    from callmeter_api.settings import ApiSettings
    from callmeter_dispatcher.settings import DispatcherSettings
    from callmeter_ingest.settings import IngestSettings
    from callmeter_scheduler.settings import SchedulerSettings
    from callmeter_worker.supervisor.settings import WorkerSettings

    classes = (ApiSettings, DispatcherSettings, IngestSettings, SchedulerSettings, WorkerSettings)
    return {f"CALLMETER_{name.upper()}" for cls in classes for name in cls.model_fields}


def test_every_callmeter_variable_set_is_a_setting() -> None:
    """A misspelt or retired name (CALLMETER_ADVERTISE_HOST) would be silently ignored."""
    names = {k for s in compose()["services"].values() for k in s.get("environment", {})}
    for _, doc in k8s_docs():
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "callmeter":
            names |= set(doc["stringData"])
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            names |= {e["name"] for e in container.get("env", [])}
    ours = {n for n in names if n.startswith("CALLMETER_")}
    assert ours, "no CALLMETER_ variable found"
    assert ours - _settings_names() == set()
