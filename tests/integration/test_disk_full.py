"""The NATS store's disk fills mid-run (a small tmpfs the test mounts): publishes fail
and say so in the logs, /readyz and the run page; nothing acknowledged is lost; once
space is freed the platform resumes by itself and the run completes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_server_outages import (
    assert_completed_once,
    server,
    two_pairs,
    wait_in_call,
)
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(request: pytest.FixtureRequest) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    size = getattr(request, "param", "48m")
    mount = Path(tempfile.mkdtemp(prefix="callmeter-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        # Lazily, so a process still holding a file can never leave the mount behind.
        subprocess.run(["umount", "-l", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()


@pytest.fixture
def on_small_disk(small_disk: Path, request: pytest.FixtureRequest) -> Iterator[TestPlatform]:
    """A platform as `callmeter up` runs it, the NATS store (or PostgreSQL's data, as the
    test's `which` parameter says) on the small disk."""
    which = getattr(request, "param", "nats")
    data_dir = Path(tempfile.mkdtemp(prefix="callmeter-diskfull-"))
    (small_disk / "store").mkdir(mode=0o777)
    (data_dir / which).symlink_to(small_disk / "store")
    p = TestPlatform(data_dir, "", "")
    p.ingest_processes = 1
    p.extra_env |= {
        "CALLMETER_READY_MIN_FREE_DISK_MB": "2",
        "CALLMETER_GRACE_S": "20",
        "CALLMETER_RECEIVER_WAIT_S": "5",
    }
    stop: list[bool] = []
    try:
        p.start_servers()
        p.start_services(("scheduler", "dispatcher", "metrics-ingest", "api"))
        p.start_worker("w1", CALLMETER_CAPACITY="8")
        threading.Thread(target=p.supervise, args=(stop,), daemon=True).start()
        p.wait_for_api()
        p.wait_workers(1)
        yield p
    finally:
        stop.append(True)
        p.stop()
        for s in reversed(p.servers):
            s.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def fill(path: Path) -> None:
    """Write until the disk says no more."""
    with path.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 2**20)
            f.flush()


def wait_for(what: str, check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true after {timeout}s: {what}"
        time.sleep(0.3)


@pytest.mark.parametrize("small_disk", ["128m"], indirect=True)
@pytest.mark.parametrize("on_small_disk", ["nats"], indirect=True)
def test_nats_store_disk_full_mid_run_then_freed_resumes_and_loses_nothing(
    on_small_disk: TestPlatform, small_disk: Path
):
    p = on_small_disk
    nats = server(p, "nats-server")
    run_id = p.run_test(two_pairs(duration_s=8))
    wait_in_call(p, run_id, 4)
    time.sleep(1)
    fill(small_disk / "ballast")
    log = p.data_dir / "nats.log"
    wait_for("NATS failed a write", lambda: "no space left on device" in log.read_text())

    def readyz_names_the_disk() -> bool:
        code, body = p.request("GET", "/readyz")
        disk = next(c for c in body["checks"] if c["name"] == "disk")
        return code == 503 and disk["detail"].startswith("disk full: NATS store")

    wait_for("/readyz names the full disk", readyz_names_the_disk)
    page = p.get_html(f"/runs/{run_id}")[1]
    assert 'id="degraded"' in page and "disk full: NATS store" in page
    wait_for(
        "a service logs its held publish", lambda: "held" in (p.data_dir / "w1.log").read_text()
    )
    assert nats.restarts == 0  # nothing restarts it while the disk is still full
    (small_disk / "ballast").unlink()
    wait_for("nats-server restarted once space was free", lambda: nats.restarts == 1)
    assert_completed_once(p, run_id)
    assert p.request("GET", "/readyz")[0] == 200


@pytest.mark.parametrize("small_disk", ["200m"], indirect=True)
@pytest.mark.parametrize("on_small_disk", ["pgdata"], indirect=True)
def test_postgres_disk_full_mid_run_then_freed_resumes_and_loses_nothing(
    on_small_disk: TestPlatform, small_disk: Path
):
    p = on_small_disk
    run_id = p.run_test(two_pairs(duration_s=8))
    wait_in_call(p, run_id, 4)
    time.sleep(1)
    fill(small_disk / "ballast")

    def readyz_names_the_disk() -> bool:
        code, body = p.request("GET", "/readyz")
        disk = next(c for c in body["checks"] if c["name"] == "disk")
        return code == 503 and disk["detail"].startswith("disk full: PostgreSQL data")

    wait_for("/readyz names the full disk", readyz_names_the_disk)
    ingest_log = p.data_dir / "metrics-ingest.log"
    wait_for("ingest holds its writes", lambda: "postgres unavailable" in ingest_log.read_text())
    assert "No space left on device" in (p.data_dir / "postgres.log").read_text()
    (small_disk / "ballast").unlink()
    assert_completed_once(p, run_id)
    wait_for("ready again", lambda: p.request("GET", "/readyz")[0] == 200)
