"""Browser sessions and API-key last use: the two bits of access state that change
on every login or request and are not facts worth an event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str
    created_at: datetime


def create(
    conn: psycopg.Connection[Any], token_hash: str, username: str, csrf: str, ttl: timedelta
) -> None:
    conn.execute(
        "INSERT INTO sessions (token_hash, username, csrf, expires_at)"
        " VALUES (%s, %s, %s, now() + %s)",
        (token_hash, username, csrf, ttl),
    )


def find(conn: psycopg.Connection[Any], token_hash: str) -> Session | None:
    row = conn.execute(
        "SELECT username, csrf, created_at FROM sessions"
        " WHERE token_hash = %s AND expires_at > now()",
        (token_hash,),
    ).fetchone()
    return Session(*row) if row else None


def end(conn: psycopg.Connection[Any], token_hash: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = %s OR expires_at <= now()", (token_hash,))


def end_all(conn: psycopg.Connection[Any], username: str) -> None:
    conn.execute("DELETE FROM sessions WHERE username = %s", (username,))


def key_used(conn: psycopg.Connection[Any], key_id: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO api_key_usage (key_id, last_used_at) VALUES (%s, %s)"
        " ON CONFLICT (key_id) DO UPDATE SET last_used_at = greatest("
        "api_key_usage.last_used_at, EXCLUDED.last_used_at)",
        (key_id, at),
    )


def keys_last_used(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    return {k: t for k, t in conn.execute("SELECT key_id, last_used_at FROM api_key_usage")}
