"""`callmeter backup DIR` and `callmeter restore DIR`.

A backup is a directory: every JetStream stream's snapshot (messages, sequence
numbers and consumers, through the JetStream API), a PostgreSQL dump
(pg_dump, custom format) and manifest.json listing them with sizes and sha256.

The streams are snapshotted before the database is dumped, so what ingest had
acknowledged is in the dump (anything later is delivered again, and ingest
stores a redelivery once). A restore goes into an empty data directory, as
`callmeter up` lays it out, and rebuilds the read models from the restored log,
so they match it exactly even if events were published during the backup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import psycopg

from callmeter_common.servers import pg_tool, start_nats, start_postgres

from .rebuild import rebuild
from .snapshots import restore_stream, snapshot_stream

MANIFEST = "manifest.json"
FORMAT = 1
DUMP = "database.dump"


class BackupError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _empty_dir(path: Path, what: str) -> None:
    if path.exists() and any(path.iterdir()):
        raise BackupError(f"{what} {path} is not empty: give a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)


async def _snapshot_all(nats_url: str, out: Path) -> list[dict[str, Any]]:
    nc = await nats.connect(nats_url, name="callmeter-backup")
    try:
        js = nc.jetstream()
        names = sorted([s.config.name or "" for s in await js.streams_info()])
        return [await snapshot_stream(nc, name, out / f"{name}.snapshot") for name in names]
    finally:
        await nc.close()


def backup(out: Path, nats_url: str, database_url: str) -> dict[str, Any]:
    """Write a backup of a running platform into `out` (new or empty); the manifest."""
    _empty_dir(out, "backup directory")
    streams = asyncio.run(_snapshot_all(nats_url, out))
    dump = out / DUMP
    done = subprocess.run(
        [pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", database_url],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "streams": streams,
        "database": {
            "file": DUMP,
            "bytes": dump.stat().st_size,
            "sha256": _sha256(dump),
            "schema_version": row[0] if row else None,
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST
    if not path.exists():
        raise BackupError(f"{path} not found: not a CallMeter backup directory")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT}")
    database = manifest["database"]
    if _sha256(source / database["file"]) != database["sha256"]:
        raise BackupError(f"{database['file']}: checksum differs from the manifest")
    return manifest


async def _restore_streams(nats_url: str, source: Path, streams: list[dict[str, Any]]) -> None:
    nc = await nats.connect(nats_url, name="callmeter-restore")
    try:
        for entry in streams:
            await restore_stream(nc, entry, source / entry["file"])
    finally:
        await nc.close()


def restore(source: Path, data_dir: Path) -> dict[str, Any]:
    """Restore a backup into an empty data directory (`callmeter up --data-dir` then
    starts from it); the manifest."""
    manifest = read_manifest(source)
    _empty_dir(data_dir, "data directory")
    nats_server = start_nats(data_dir)
    pg = start_postgres(data_dir)
    try:
        done = subprocess.run(
            [
                pg_tool("pg_restore"),
                "--no-owner",
                "--exit-on-error",
                f"--dbname={pg.url}",
                str(source / manifest["database"]["file"]),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
        asyncio.run(_restore_streams(nats_server.url, source, manifest["streams"]))
        rebuild(nats_server.url, pg.url)
    finally:
        nats_server.stop()
        pg.stop()
    return manifest
