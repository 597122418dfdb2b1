"""A whole platform for integration tests: services as real processes on free ports."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from callmeter_cli.platform import MODULES, Platform
from callmeter_common.procs import free_port, spawn, stop_group


class TestPlatform(Platform):
    """Platform with helpers to talk to the API and to kill or add services."""

    __test__ = False  # a helper, not a test class

    def __init__(self, data_dir: Path, nats_url: str, database_url: str) -> None:
        super().__init__(data_dir, nats_url, database_url, free_port())
        self.nats_port = self.pg_port = 0  # servers it starts: any free port, never 4222/5433
        # An installation serves nobody until it is claimed: the platform starts with a
        # key of its own (an Owner of everything), which request() and get_html() send.
        # A test of the unclaimed state sets api_key = "" and drops the variable.
        self.api_key = "test-" + secrets.token_urlsafe(16)
        self.extra_env["CALLMETER_API_KEYS"] = self.api_key
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_worker(self, worker_id: str, **env: str) -> None:
        extra = {"CALLMETER_WORKER_ID": worker_id, **{k.upper(): v for k, v in env.items()}}
        self.procs[worker_id] = spawn(
            [sys.executable, "-m", MODULES["worker"]],
            self.data_dir / f"{worker_id}.log",
            env={**self.env, **extra},
        )

    def start_replica(self, service: str, name: str, **env: str) -> None:
        """Another process of a service, e.g. a second API on its own port."""
        self.procs[name] = spawn(
            [sys.executable, "-m", MODULES[service]],
            self.data_dir / f"{name}.log",
            env={**self.env, **env},
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """kill -9 (by default) a service and everything it started."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(10)

    def restart(self, name: str) -> None:
        self._start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc, timeout=10)
        self.procs.clear()
        for server in reversed(self.servers):  # the NATS and PostgreSQL start_servers started
            server.stop()
        self.servers.clear()

    @property
    def auth(self) -> dict[str, str]:
        """The header of the platform's key, for requests a test makes itself."""
        return self._auth()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path,
            data,
            {"Content-Type": "application/json", **self._auth()},
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def get_html(self, path: str) -> tuple[int, str]:
        req = urllib.request.Request(
            self.base + path, headers={"Accept": "text/html", **self._auth()}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def wait_workers(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, body = self.request("GET", "/api/v1/workers")
            if sum(1 for w in body["items"] if w["status"] == "ONLINE") >= count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"fewer than {count} workers online after {timeout}s")

    def run_test(self, definition: dict[str, Any]) -> str:
        status, body = self.request("POST", "/api/v1/tests", definition)
        assert status == 201, body
        status, body = self.request("POST", f"/api/v1/tests/{body['id']}/runs")
        assert status == 202, body
        return str(body["id"])

    def wait_status(
        self, run_id: str, statuses: set[str], timeout: float = 90, every_s: float = 0.25
    ) -> dict[str, Any]:
        """The run once its status is one of `statuses`, asked every `every_s` (each
        answer computes the run's summary: a benchmark asks seldom, not to load what
        it measures)."""
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, run = self.request("GET", f"/api/v1/runs/{run_id}")
            if code == 503:  # a server restarting: asked again
                time.sleep(0.25)
                continue
            if run["status"] in statuses:
                return run
            time.sleep(every_s)
        raise TimeoutError(
            f"run {run_id} still {run.get('status')} after {timeout}s\n{self.diagnosis()}"
        )

    def diagnosis(self, lines: int = 6) -> str:
        """Each service process: running or its exit code, and the last warnings and
        errors of its log (what a CI failure needs, where the data dir is gone)."""
        out = []
        for name, proc in self.procs.items():
            state = "running" if proc.poll() is None else f"EXITED {proc.returncode}"
            log = self.data_dir / f"{name}.log"
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            marked = [t for t in text if " WARNING " in t or " ERROR " in t or "Error" in t]
            out.append(f"-- {name}: {state}, {len(text)} log lines; last warnings/errors:")
            out.extend("   " + t[:300] for t in marked[-lines:])
        return "\n".join(out)

    def wait_samples_stored(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        """The run once ingest's watermark says every sample is stored (a run can end
        COMPLETED while its last batches are still on their way to the database)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, run = self.request("GET", f"/api/v1/runs/{run_id}")
            if code == 200 and run.get("samples_stored") is not None:
                return dict(run)
            time.sleep(0.25)
        raise TimeoutError(f"run {run_id}: ingest reported no stored samples in {timeout}s")

    def wait_contact(self, run_id: str, endpoint_id: str, timeout: float = 30) -> str:
        """The endpoint's Contact URI as soon as it advertises one (where to aim a peer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, run = self.request("GET", f"/api/v1/runs/{run_id}")
            for e in run.get("endpoints", []):
                if e["id"] == endpoint_id and e.get("contact_uri"):
                    return str(e["contact_uri"])
            time.sleep(0.1)
        raise TimeoutError(f"{endpoint_id} of run {run_id} advertised no contact in {timeout}s")
