"""Databases of their own for storage tests, on the embedded PostgreSQL or on the
TimescaleDB server CALLMETER_TEST_TIMESCALE_URL names (`.ci/run` starts one)."""

from __future__ import annotations

import os
import uuid

import psycopg

TIMESCALE_URL = os.environ.get("CALLMETER_TEST_TIMESCALE_URL")
STORAGE_MODES = ("plain", "timescaledb")
NO_TIMESCALE = "set CALLMETER_TEST_TIMESCALE_URL to a TimescaleDB server (.ci/run starts one)"


def create_database(server_url: str) -> str:
    """A new empty database on the server of `server_url`; returns its URL."""
    base = server_url.rsplit("/", 1)[0]
    name = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    """Drop it, closing what is still connected. On a TimescaleDB server this also
    ends the database's job scheduler, which holds one of the few background workers."""
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
