"""Fixtures for integration tests that need servers of their own (not the session's)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from callmeter_common.bus import Bus
from callmeter_common.servers import Server, start_nats
from callmeter_storage.migrations import migrate


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[Server]:
    server = start_nats(tmp_path / "nats")  # a stream holding only this test's log
    yield server
    server.stop()


@pytest.fixture
def own_db(postgres_server: Server) -> Iterator[str]:
    name = f"own_{uuid.uuid4().hex[:8]}"
    base = postgres_server.url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(f"{base}/{name}")
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def own_bus(own_nats: Server) -> AsyncIterator[Bus]:
    b = await Bus.connect(own_nats.url, "test")
    await b.ensure_streams()
    yield b
    await b.close()
