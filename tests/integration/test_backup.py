"""`callmeter backup DIR` / `callmeter restore DIR`: the round trip through the real
commands. The restored platform shows the same tests, runs, results, SIP ladders and
replays, and new runs work."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callmeter_events import ALL_STREAMS
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration
PAIR = {
    "name": "backed up",
    "duration_s": 3,
    "groups": [{"name": "C", "endpoints": 1, "calls": "R"}, {"name": "R", "endpoints": 1}],
}


def callmeter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callmeter_cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


class Owned:
    """A platform with its own embedded servers under a data dir, as `callmeter up`."""

    def __init__(self, data_dir: Path) -> None:
        self.p = TestPlatform(data_dir, "", "")
        self.p.ingest_processes = 1
        self.stop_flag: list[bool] = []

    def __enter__(self) -> TestPlatform:
        self.p.start_servers()
        self.p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
        self.p.start_worker("w1", CALLMETER_CAPACITY="8")
        threading.Thread(target=self.p.supervise, args=(self.stop_flag,), daemon=True).start()
        self.p.wait_for_api()
        self.p.wait_workers(1)
        return self.p

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.append(True)
        self.p.stop()
        for server in reversed(self.p.servers):
            server.stop()


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path, Path]]:
    # Not under pytest's 0700 basetemp: postgres runs as an unprivileged user when root.
    base = Path(tempfile.mkdtemp(prefix="callmeter-backup-"))
    yield base / "source", base / "backup", base / "restored"
    shutil.rmtree(base, ignore_errors=True)


def views(p: TestPlatform, run_id: str) -> dict[str, Any]:
    """What a user sees of the platform and of one run."""
    run = p.request("GET", f"/api/v1/runs/{run_id}")[1]
    ladders = {
        e["id"]: p.request("GET", f"/api/v1/runs/{run_id}/endpoints/{e['id']}")[1]["me"]["timeline"]
        for e in run["endpoints"]
    }
    return {
        "tests": p.request("GET", "/api/v1/tests")[1]["items"],
        "runs": p.request("GET", "/api/v1/runs")[1]["items"],
        "run": run,
        "results": p.request("GET", f"/api/v1/runs/{run_id}/results")[1],
        "ladders": ladders,
        "replay": p.get_html(f"/runs/{run_id}/replay?at=2"),
        "series": p.request("GET", f"/api/v1/runs/{run_id}/series")[1],
        "samples_csv": p.get_html(f"/api/v1/runs/{run_id}/samples?format=csv"),
    }


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (for a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b))
            for d in differences(a.get(k), b.get(k), f"{path}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        # A sum over restored rows may add them in another order: the last bit may differ.
        return [] if math.isclose(a, b, rel_tol=1e-12) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:300]]


def test_backup_then_restore_into_an_empty_data_dir_shows_the_same_and_runs_again(dirs):
    source, backup_dir, restored = dirs
    with Owned(source) as p:
        run_id = p.run_test(PAIR)
        assert p.wait_status(run_id, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"
        deadline = time.monotonic() + 30  # the verdict on thresholds follows the results
        while p.request("GET", f"/api/v1/runs/{run_id}")[1]["evaluation"] is None:
            assert time.monotonic() < deadline, "run never evaluated"
            time.sleep(0.3)
        before = views(p, run_id)
        assert all(before["ladders"].values()), "the SIP ladder has messages"
        env = {"CALLMETER_NATS_URL": p.nats_url, "CALLMETER_DATABASE_URL": p.database_url}
        done = callmeter("backup", str(backup_dir), env=env)
        assert done.returncode == 0, done.stderr
        # Every stream the server holds: the platform's five and its object stores
        # (workers' snapshots, uploaded audio) when they exist.
        backed = re.search(r"backed up (\d+) streams", done.stdout)
        assert backed and int(backed[1]) >= len(ALL_STREAMS), done.stdout
        # A backup never overwrites: the same directory again is refused.
        again = callmeter("backup", str(backup_dir), env=env)
        assert again.returncode == 1 and "is not empty" in again.stderr

    done = callmeter("restore", str(backup_dir), "--data-dir", str(restored))
    assert done.returncode == 0, done.stderr
    again = callmeter("restore", str(backup_dir), "--data-dir", str(restored))
    assert again.returncode == 1 and "is not empty" in again.stderr

    with Owned(restored) as p:
        after = views(p, run_id)
        for key in before:
            assert not differences(before[key], after[key]), (
                key,
                differences(before[key], after[key]),
            )
        new_run = p.run_test({**PAIR, "name": "after restore"})
        assert p.wait_status(new_run, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"


def test_restore_names_what_is_wrong_with_a_damaged_backup(dirs):
    _, backup_dir, restored = dirs
    done = callmeter("restore", str(backup_dir), "--data-dir", str(restored))
    assert done.returncode == 1 and "manifest.json not found" in done.stderr
