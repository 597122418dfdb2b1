"""Start the whole platform: servers (unless given), schema, streams, five services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from callmeter_common.api_keys import ApiKey, parse_keys
from callmeter_common.bus import Bus
from callmeter_common.demo import DEMO_TEST
from callmeter_common.nats_cluster import start_nats_cluster
from callmeter_common.procs import free_port, port_free, spawn, stop_group, wait_for_port
from callmeter_common.servers import (
    NATS_SYNC_DEFAULT,
    PG_SYNCHRONOUS_COMMIT_DEFAULT,
    Server,
    start_nats,
    start_postgres,
)
from callmeter_common.settings import CommonSettings
from callmeter_storage.migrations import migrate

SERVICES = ("scheduler", "dispatcher", "worker", "metrics-ingest", "api")
MODULES = {
    "scheduler": "callmeter_scheduler",
    "dispatcher": "callmeter_dispatcher",
    "worker": "callmeter_worker",
    "metrics-ingest": "callmeter_ingest",
    "api": "callmeter_api",
}


def demo_key(keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The API key the platform creates the demo test with: the first key for every
    project (the demo then belongs to none, like one made without keys), else the
    first project's key (the demo lands in that project). None when no keys are set."""
    return next((k for k in keys if k.project is None), keys[0] if keys else None)


def _port_or_free(preferred: int) -> int:
    """The preferred port when it is free (0: none preferred), else any free port."""
    return preferred if preferred and port_free(preferred) else free_port()


@dataclass
class Platform:
    data_dir: Path
    nats_url: str = ""
    database_url: str = ""
    api_port: int = 8000
    servers: list[Server] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. OTEL_* for every service
    # The API's keys (the services inherit CALLMETER_API_KEYS): the demo test needs one.
    api_keys: tuple[ApiKey, ...] = field(
        default_factory=lambda: parse_keys(os.environ.get("CALLMETER_API_KEYS", ""))
    )
    # metrics-ingest processes sharing its durable consumer: one process is bound by
    # its GIL well before PostgreSQL is (bench/ingest.py: 2 reach ~1.5x the rate of 1).
    ingest_processes: int = 2
    nats_sync: str = NATS_SYNC_DEFAULT  # JetStream sync_interval: a duration or "always"
    pg_synchronous_commit: str = PG_SYNCHRONOUS_COMMIT_DEFAULT
    # Ports the embedded servers get when free (0: any free port, as tests want).
    nats_port: int = 4222
    pg_port: int = 5433
    nats_nodes: int = 1  # >1: a JetStream cluster on loopback, streams replicated
    stream_replicas: int = 0  # 0: CALLMETER_STREAM_REPLICAS, else min(nats_nodes, 3)
    # What /setup needs to create the first administrator: printed at start-up while
    # the installation has no user, so only who sees this output can claim it.
    setup_token: str = field(
        default_factory=lambda: os.environ.get("CALLMETER_SETUP_TOKEN") or secrets.token_urlsafe(18)
    )

    def start_servers(self) -> None:
        """Start the embedded servers not given by URL; `supervise` restarts them."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.stream_replicas:
            given = "CALLMETER_STREAM_REPLICAS" in os.environ or self.nats_url
            self.stream_replicas = (
                CommonSettings().stream_replicas if given else min(self.nats_nodes, 3)
            )
        if not self.nats_url and self.nats_nodes > 1:
            ports = [_port_or_free(self.nats_port + i) for i in range(self.nats_nodes)]
            cluster = start_nats_cluster(self.data_dir, self.nats_nodes, ports, self.nats_sync)
            self.servers += cluster.servers()
            self.nats_url = cluster.url
        elif not self.nats_url:
            nats = start_nats(self.data_dir, _port_or_free(self.nats_port), self.nats_sync)
            self.servers.append(nats)
            self.nats_url = nats.url
        if not self.database_url:
            pg = start_postgres(
                self.data_dir,
                _port_or_free(self.pg_port),
                synchronous_commit=self.pg_synchronous_commit,
            )
            self.servers.append(pg)
            self.database_url = pg.url
        mode = migrate(self.database_url)
        asyncio.run(_ensure_streams(self.nats_url, self.stream_replicas))
        print(
            f"NATS {self.nats_url} (streams x{self.stream_replicas})  "
            f"PostgreSQL {self.database_url}  storage mode: {mode}"
        )

    def start_services(self, services: tuple[str, ...] = SERVICES) -> None:
        self.env = {
            "CALLMETER_NATS_URL": self.nats_url,
            "CALLMETER_DATABASE_URL": self.database_url,
            "CALLMETER_PORT": str(self.api_port),
            "CALLMETER_DATA_DIR": str(self.data_dir),
            "CALLMETER_STREAM_REPLICAS": str(self.stream_replicas or 1),
            "CALLMETER_SETUP_TOKEN": self.setup_token,
            **self.extra_env,
        }
        for name in services:
            copies = self.ingest_processes if name == "metrics-ingest" else 1
            for copy in range(1, copies + 1):
                self._start(name if copy == 1 else f"{name}-{copy}")

    def _start(self, name: str) -> None:
        """Start a service by name; "<service>-<n>" is its n-th process."""
        log = self.data_dir / f"{name}.log"
        service = name if name in MODULES else name.rsplit("-", 1)[0]
        argv = [sys.executable, "-m", MODULES[service]]
        self.procs[name] = spawn(argv, log, env=self.env)

    def supervise(self, stop: list[bool]) -> None:
        """Restart any server or service that exits until `stop` is set.

        Servers come back on the same data and port (services reconnect to them);
        services rebuild their state from the log.
        """
        while not stop:
            time.sleep(0.5)
            for server in self.servers:
                if not stop and (happened := server.supervise_once(time.monotonic())):
                    print(happened, flush=True)
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and not stop:
                    print(f"{name} exited with {proc.returncode}; restarting (see its log)")
                    self._start(name)

    def ensure_demo_test(self) -> str | None:
        """Create the demo test on a platform that has no test yet (as the key sees it);
        the project it landed in, if any, for the start-up message."""
        base = f"http://127.0.0.1:{self.api_port}/api/v1/tests"
        key = demo_key(self.api_keys)
        headers = {"Authorization": f"Bearer {key.token}"} if key else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(base, headers=headers), timeout=10
            ) as resp:
                if json.load(resp)["items"]:
                    return None
        except urllib.error.HTTPError as err:
            if err.code == 401:  # no key: the first administrator's setup creates it
                return None
            raise
        headers["Content-Type"] = "application/json"
        urllib.request.urlopen(
            urllib.request.Request(base, json.dumps(DEMO_TEST).encode(), headers), timeout=10
        ).close()
        return key.project if key else None

    def setup_url(self) -> str | None:
        """The first-administrator link, while the installation has no user."""
        url = f"http://127.0.0.1:{self.api_port}/setup"
        with urllib.request.urlopen(url, timeout=10) as resp:  # a claimed one redirects
            if resp.url.rstrip("/").endswith("/setup"):
                return f"{url}?token={self.setup_token}"
        return None

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            stop_group(proc, timeout=15)
        for server in reversed(self.servers):
            server.stop()

    def wait_for_api(self, timeout: float = 60) -> None:
        wait_for_port("127.0.0.1", self.api_port, timeout)


async def _ensure_streams(url: str, replicas: int) -> None:
    bus = await Bus.connect(url, "cli")
    try:
        await bus.ensure_streams(replicas=replicas or None)
    finally:
        await bus.close()
