"""Rows a project names and the API looks up by id: registrars, account pools and
probes. Each table has an id key, `project`, `name` (unique in the project) and
`updated_at`; registrars and probes keep their settings in a `doc` column."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

# table -> its id column (a table name is only ever taken from here, never from input)
KEYS = {"registrars": "registrar_id", "account_pools": "pool_id", "probes": "probe_id"}


def get(conn: psycopg.Connection, table: str, row_id: str, *extra: str) -> tuple[Any, ...] | None:
    """(id, project, name, *extra columns) of the row, or None."""
    key = KEYS[table]
    columns = ", ".join((key, "project", "name", *extra))
    sql = f"SELECT {columns} FROM {table} WHERE {key} = %s"  # noqa: S608
    row = conn.execute(sql, (row_id,)).fetchone()
    return tuple(row) if row else None


def every(conn: psycopg.Connection, table: str, *extra: str) -> list[tuple[Any, ...]]:
    """(id, project, name, *extra columns) of every row, by project and name."""
    columns = ", ".join((KEYS[table], "project", "name", *extra))
    sql = f"SELECT {columns} FROM {table} ORDER BY project, name"  # noqa: S608
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def save(
    conn: psycopg.Connection,
    table: str,
    row_id: str,
    project: str,
    name: str,
    doc: dict[str, Any] | None = None,
) -> None:
    """Insert the row or update it in place (with `doc` when the table has one)."""
    key = KEYS[table]
    columns = [key, "project", "name"]
    values: list[Any] = [row_id, project, name]
    if doc is not None:
        columns.append("doc")
        values.append(Jsonb(doc))
    names, holes = ", ".join(columns), ", ".join(["%s"] * len(columns))
    updates = "".join(f"{c} = EXCLUDED.{c}, " for c in columns[1:])
    conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({holes})"  # noqa: S608
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}updated_at = now()",
        values,
    )


def delete(conn: psycopg.Connection, table: str, row_id: str) -> bool:
    """Delete the row; whether there was one."""
    cur = conn.execute(f"DELETE FROM {table} WHERE {KEYS[table]} = %s", (row_id,))  # noqa: S608
    return cur.rowcount > 0


def name_taken(conn: psycopg.Connection, table: str, project: str, name: str, own_id: str) -> bool:
    """Whether another row of the project already has this name."""
    key = KEYS[table]
    row = conn.execute(
        f"SELECT 1 FROM {table} WHERE project = %s AND name = %s AND {key} <> %s",  # noqa: S608
        (project, name, own_id),
    ).fetchone()
    return row is not None
