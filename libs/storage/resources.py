"""Project resources: registrars and SIP account pools (rows; passwords in `secrets`),
and which project uploaded which audio."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from . import named


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# --- registrars -----------------------------------------------------------------------


def registrar_row(row: tuple[Any, ...]) -> dict[str, Any]:
    rid, project, name, doc = row
    return {"id": rid, "project": project, "name": name, **doc}


def list_registrars(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [registrar_row(r) for r in named.every(conn, "registrars", "doc")]


def get_registrar(conn: psycopg.Connection, registrar_id: str) -> dict[str, Any] | None:
    row = named.get(conn, "registrars", registrar_id, "doc")
    return registrar_row(row) if row else None


def save_registrar(
    conn: psycopg.Connection, registrar_id: str, project: str, name: str, doc: dict[str, Any]
) -> None:
    named.save(conn, "registrars", registrar_id, project, name, doc)


def delete_registrar(conn: psycopg.Connection, registrar_id: str) -> bool:
    return named.delete(conn, "registrars", registrar_id)


# --- account pools --------------------------------------------------------------------


def list_pools(conn: psycopg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT p.pool_id, p.project, p.name, count(a.username)"
        " FROM account_pools p LEFT JOIN pool_accounts a USING (pool_id)"
        " GROUP BY p.pool_id ORDER BY p.project, p.name"
    ).fetchall()
    return [{"id": r[0], "project": r[1], "name": r[2], "size": r[3]} for r in rows]


def get_pool(conn: psycopg.Connection, pool_id: str) -> dict[str, Any] | None:
    row = named.get(conn, "account_pools", pool_id)
    if row is None:
        return None
    accounts = conn.execute(
        "SELECT username, auth_username, password_ref FROM pool_accounts"
        " WHERE pool_id = %s ORDER BY position",
        (pool_id,),
    ).fetchall()
    return {
        "id": row[0],
        "project": row[1],
        "name": row[2],
        "accounts": [
            {"username": u, "auth_username": a, "password_ref": ref} for u, a, ref in accounts
        ],
    }


def save_pool(
    conn: psycopg.Connection,
    pool_id: str,
    project: str,
    name: str,
    accounts: list[dict[str, Any]],
) -> None:
    """Replace the pool's accounts ({username, auth_username, password_ref}, in order)."""
    named.save(conn, "account_pools", pool_id, project, name)
    conn.execute("DELETE FROM pool_accounts WHERE pool_id = %s", (pool_id,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO pool_accounts (pool_id, position, username, auth_username, password_ref)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                (pool_id, i, a["username"], a.get("auth_username"), a.get("password_ref"))
                for i, a in enumerate(accounts)
            ],
        )


def delete_pool(conn: psycopg.Connection, pool_id: str) -> bool:
    return named.delete(conn, "account_pools", pool_id)


# --- audio uploads ----------------------------------------------------------------------


def add_audio(conn: psycopg.Connection, project: str, ref: str) -> None:
    conn.execute(
        "INSERT INTO audio_uploads (project, ref) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (project, ref),
    )


def audio_projects(conn: psycopg.Connection, ref: str) -> list[str]:
    """The projects audio `ref` was uploaded into."""
    rows = conn.execute(
        "SELECT project FROM audio_uploads WHERE ref = %s ORDER BY project", (ref,)
    ).fetchall()
    return [r[0] for r in rows]


def delete_projects(conn: psycopg.Connection, projects: list[str]) -> dict[str, int]:
    """Every registrar, pool (with its accounts) and audio upload of these projects;
    rows deleted per table. The pools' passwords are in `secrets` (shred them too)."""
    deleted = {}
    for table in ("registrars", "account_pools", "audio_uploads"):
        cur = conn.execute(f"DELETE FROM {table} WHERE project = ANY(%s)", (projects,))  # noqa: S608
        deleted[table] = cur.rowcount
    return deleted
