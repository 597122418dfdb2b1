"""A supervised server spec: restarted on the same port when it exits, with backoff when
its start fails; the JetStream sync setting is checked before any server starts."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from callmeter_common.procs import free_port
from callmeter_common.servers import RestartPolicy, Server, ServerSpec, check_nats_sync, launch


def http_spec(tmp_path: Path, argv: tuple[str, ...] | None = None) -> ServerSpec:
    port = free_port()
    argv = argv or (sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port))
    return ServerSpec(
        "web",
        argv,
        tmp_path,
        port,
        f"http://127.0.0.1:{port}",
        tmp_path / "web.log",
        ready_timeout_s=10,
        policy=RestartPolicy(backoff_s=1.0, max_backoff_s=3.0),
    )


@pytest.mark.parametrize("value", ["always", "1s", "2m", "500ms", "1.5s", "1h"])
def test_sync_accepts_always_and_durations(value: str) -> None:
    assert check_nats_sync(value) == value


@pytest.mark.parametrize("value", ["", "never", "1", "10 s", "1d", "always!"])
def test_sync_names_what_it_expects(value: str) -> None:
    with pytest.raises(ValueError, match="nats sync: expected 'always' or a duration"):
        check_nats_sync(value)


def test_a_killed_server_is_restarted_on_the_same_port(tmp_path: Path) -> None:
    spec = http_spec(tmp_path)
    server = Server(spec, launch(spec))
    try:
        assert server.supervise_once(0.0) is None  # alive: nothing to do
        first = server.proc.pid
        os.kill(first, signal.SIGKILL)
        server.proc.wait(5)
        happened = server.supervise_once(0.0)
        assert happened == f"web exited (-9); restarted on port {spec.port}"
        assert server.alive() and server.proc.pid != first and server.restarts == 1
    finally:
        server.stop()


def test_a_failed_restart_backs_off_doubling_up_to_the_maximum(tmp_path: Path) -> None:
    good = http_spec(tmp_path)
    server = Server(good, launch(good))
    server.stop()  # exited; now it cannot start again
    server.spec = http_spec(tmp_path, (sys.executable, "-c", "raise SystemExit(3)"))
    delays = []
    now = 100.0
    for _ in range(4):
        happened = server.supervise_once(now)
        assert happened is not None and "restart failed: web exited with 3 at start" in happened
        delays.append(server.next_try - now)
        assert server.supervise_once(now) is None  # not before next_try
        now = server.next_try
    assert delays == [1.0, 2.0, 3.0, 3.0]


def test_a_server_whose_policy_says_no_restart_stays_down(tmp_path: Path) -> None:
    spec = http_spec(tmp_path)
    server = Server(spec, launch(spec))
    server.spec = ServerSpec(**{**spec.__dict__, "policy": RestartPolicy(restart=False)})
    server.stop()
    assert server.supervise_once(0.0) is None and not server.alive()


def test_a_server_whose_log_says_it_is_stuck_is_restarted_once_its_disk_has_room(
    tmp_path: Path,
) -> None:
    base = http_spec(tmp_path)
    full = ServerSpec(
        **{**base.__dict__, "stuck_pattern": "Critical write error", "min_free_bytes": 2**62}
    )
    server = Server(full, launch(full))
    try:
        assert server.supervise_once(0.0) is None  # nothing in its log yet
        with full.log.open("a") as log:
            log.write("[1] [ERR] Critical write error: no space left on device\n")
        assert server.supervise_once(0.0) is None  # stuck, but no disk has 4 EiB free
        assert server.stuck == "[1] [ERR] Critical write error: no space left on device"
        server.spec = ServerSpec(**{**full.__dict__, "min_free_bytes": 0})
        happened = server.supervise_once(0.0)
        assert happened == (
            "web was stuck ([1] [ERR] Critical write error: no space left on device);"
            f" restarted on port {full.port}"
        )
        assert server.restarts == 1 and server.stuck == "" and server.alive()
        assert server.supervise_once(0.0) is None  # the old line is not read again
    finally:
        server.stop()
