"""What operators and orchestrators ask: is the platform ready, and how big and busy is it.

`readiness` is pure (checks in, verdict out); the probes around it only gather facts
from NATS (JetStream API) and PostgreSQL, each with a short timeout, so a server
that hangs makes a check fail instead of hanging the probe.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from callmeter_events.streams import INGEST_DURABLE, METRICS

from .deps import Platform

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def readiness(checks: list[Check]) -> tuple[int, dict[str, Any]]:
    """200 when every check passes, else 503; the body names each check and why."""
    ready = all(c.ok for c in checks)
    body = {"status": "ready" if ready else "not_ready", "checks": [asdict(c) for c in checks]}
    return (200 if ready else 503), body


def lag_check(name: str, behind: int | None, limit: int, unit: str) -> Check:
    if behind is None:
        return Check(name, False, "unknown (NATS unreachable)")
    return Check(name, behind <= limit, f"{behind} {unit} behind (limit {limit})")


async def nats_check(p: Platform) -> Check:
    if not p.bus.nc.is_connected:
        return Check("nats", False, f"not connected to {p.settings.nats_url}")
    try:
        info = await asyncio.wait_for(p.bus.js.account_info(), PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return Check("nats", False, f"JetStream API: {type(exc).__name__}: {exc}")
    return Check("nats", True, f"JetStream {info.storage} bytes stored")


def _select_one(p: Platform) -> None:
    with p.pool.connection(timeout=PROBE_TIMEOUT_S) as conn:
        conn.execute("SELECT 1")


async def postgres_check(p: Platform) -> Check:
    try:
        await asyncio.wait_for(asyncio.to_thread(_select_one, p), PROBE_TIMEOUT_S + 1)
    except (psycopg.Error, TimeoutError, OSError) as exc:
        return Check("postgres", False, f"{type(exc).__name__}: {exc}".strip())
    return Check("postgres", True, "SELECT 1 answered")


# The embedded servers' data under CALLMETER_DATA_DIR (what `callmeter up` starts).
DATA_SUBDIRS = {"nats": "NATS store", "pgdata": "PostgreSQL data"}


def disk_check(data_dir: Path, min_free_mb: float) -> Check:
    """Free space where the embedded servers keep their data; a full disk fails it."""
    found = []
    for sub, what in DATA_SUBDIRS.items():
        path = data_dir / sub
        if path.exists():
            free_mb = shutil.disk_usage(path).free / 2**20
            found.append((free_mb, f"{what} {path}: {free_mb:.1f} MB free"))
    if not found:
        return Check("disk", True, f"no embedded server data under {data_dir}")
    full = [text for free_mb, text in found if free_mb < min_free_mb]
    if full:
        return Check("disk", False, f"disk full: {'; '.join(full)} (minimum {min_free_mb:g} MB)")
    return Check("disk", True, "; ".join(text for _, text in found))


async def ingest_lag(p: Platform) -> int | None:
    """Messages waiting for metrics-ingest (None: NATS did not answer)."""
    try:
        info = await asyncio.wait_for(
            p.bus.js.consumer_info(METRICS.name, INGEST_DURABLE), PROBE_TIMEOUT_S
        )
    except Exception:  # noqa: BLE001 - unreachable or no consumer yet: unknown
        return None
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


def projection_lag(p: Platform) -> int:
    """Events this API has folded that are not in the read-model rows yet."""
    return sum(len(part.pending) for part in p.projector.parts.values())


async def degraded_notice(p: Platform) -> str | None:
    """What a run page says while the platform is degraded (None: all is well)."""
    if p.bus.nats_down_since is not None:
        return (
            f"Platform degraded: NATS unreachable since {p.bus.nats_down_since:%H:%M:%S}."
            " Live updates are paused; runs' deadlines count the outage."
        )
    disk = disk_check(p.settings.data_dir, p.settings.ready_min_free_disk_mb)
    if not disk.ok:
        return f"Platform degraded: {disk.detail}. Publishes and writes wait until space is freed."
    lag = await ingest_lag(p)
    if lag is not None and lag > p.settings.ready_max_ingest_lag:
        return f"Platform degraded: metrics-ingest is {lag} messages behind; results will catch up."
    return None


def database_down_notice(exc: Exception) -> str:
    return (
        f"Platform degraded: PostgreSQL unreachable ({type(exc).__name__}). Live updates are"
        " paused; samples wait in JetStream and are stored once it is back."
    )


async def checks(p: Platform) -> list[Check]:
    nats, pg, ingest = await asyncio.gather(nats_check(p), postgres_check(p), ingest_lag(p))
    projection = projection_lag(p)
    s = p.settings
    return [
        nats,
        pg,
        disk_check(s.data_dir, s.ready_min_free_disk_mb),
        lag_check("ingest_lag", ingest, s.ready_max_ingest_lag, "messages"),
        lag_check("projection_lag", projection, s.ready_max_projection_lag, "events"),
    ]


# --- the System page -------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRow:
    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: list[tuple[str, int]]  # durable consumer name, messages waiting for it


async def streams(p: Platform) -> list[StreamRow]:
    rows = []
    for info in await asyncio.wait_for(p.bus.js.streams_info(), PROBE_TIMEOUT_S):
        name = info.config.name or ""
        consumers = await asyncio.wait_for(p.bus.js.consumers_info(name), PROBE_TIMEOUT_S)
        waiting = sorted(
            (c.name, int(c.num_pending or 0) + int(c.num_ack_pending or 0))
            for c in consumers
            if c.config.durable_name
        )
        st = info.state
        rows.append(StreamRow(name, st.messages, st.bytes, st.first_seq, st.last_seq, waiting))
    return sorted(rows, key=lambda r: r.name)


def database_facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Database size, receive samples stored per second over the last minute, oldest run."""
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    rate = conn.execute(
        "SELECT coalesce(sum(n), 0) FROM rollup_second"
        " WHERE metric = 'samples' AND second > now() - interval '60 seconds'"
    ).fetchone()
    oldest = conn.execute(
        "SELECT run_id, created_at FROM runs ORDER BY created_at LIMIT 1"
    ).fetchone()
    return {
        "database_bytes": int(size[0]) if size else 0,
        "recv_samples_per_s": round(float(rate[0]) / 60, 1) if rate else 0.0,
        "oldest_run": {"run_id": oldest[0], "created_at": oldest[1]} if oldest else None,
    }
