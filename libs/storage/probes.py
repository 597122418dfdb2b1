"""Probes (rows): definitions, executions and health; a project's webhooks and
public status page. Passwords and webhook secrets are in `secrets` (by reference)."""

from __future__ import annotations

import secrets as random
from datetime import datetime
from typing import Any

import psycopg

from . import named

_PROBE_COLUMNS = ("doc", "health", "health_since")


def create(conn: psycopg.Connection) -> None:
    conn.execute("""
CREATE TABLE probes (
    probe_id text PRIMARY KEY, project text NOT NULL, name text NOT NULL,
    doc jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    health text, health_since timestamptz, health_run text,
    UNIQUE (project, name)
);
CREATE TABLE probe_executions (
    run_id text PRIMARY KEY,
    probe_id text NOT NULL REFERENCES probes ON DELETE CASCADE,
    slot bigint NOT NULL, started_at timestamptz NOT NULL DEFAULT now(),
    judged_at timestamptz, health text, reason text NOT NULL DEFAULT '',
    mos double precision, post_dial_delay_ms double precision, success_pct double precision,
    UNIQUE (probe_id, slot)
);
CREATE INDEX ON probe_executions (probe_id, started_at);
CREATE TABLE project_webhooks (
    project text NOT NULL, position integer NOT NULL, url text NOT NULL, secret_ref text,
    PRIMARY KEY (project, url)
);
CREATE TABLE status_pages (project text PRIMARY KEY, slug text NOT NULL UNIQUE);
""")


def _probe(row: tuple[Any, ...]) -> dict[str, Any]:
    pid, project, name, doc, health, since = row
    return {"id": pid, "project": project, "name": name, **doc, "health": health, "since": since}


def list_probes(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [_probe(r) for r in named.every(conn, "probes", *_PROBE_COLUMNS)]


def get_probe(conn: psycopg.Connection, probe_id: str) -> dict[str, Any] | None:
    row = named.get(conn, "probes", probe_id, *_PROBE_COLUMNS)
    return _probe(row) if row else None


def save_probe(
    conn: psycopg.Connection, probe_id: str, project: str, name: str, doc: dict[str, Any]
) -> None:
    named.save(conn, "probes", probe_id, project, name, doc)


def set_enabled(conn: psycopg.Connection, probe_id: str, enabled: bool) -> None:
    conn.execute(
        "UPDATE probes SET doc = jsonb_set(doc, '{enabled}', to_jsonb(%s::boolean)),"
        " updated_at = now() WHERE probe_id = %s",
        (enabled, probe_id),
    )


def delete_probe(conn: psycopg.Connection, probe_id: str) -> bool:
    return named.delete(conn, "probes", probe_id)


def delete_projects(conn: psycopg.Connection, projects: list[str]) -> dict[str, int]:
    """Every probe (with its history), project webhook and status page of these
    projects; rows deleted per table. Their secrets are in `secrets` (shred them too)."""
    deleted = {}
    for table in ("probes", "project_webhooks", "status_pages"):
        cur = conn.execute(f"DELETE FROM {table} WHERE project = ANY(%s)", (projects,))  # noqa: S608
        deleted[table] = cur.rowcount
    return deleted


# --- executions ------------------------------------------------------------------------


def add_probe_health(conn: psycopg.Connection) -> None:
    """Each execution keeps the probe's health after it (`probe_health`), so the next
    one is decided from stored rows, the same in every API process. The latest judged
    execution of each probe takes the health folded so far."""
    conn.execute("""
ALTER TABLE probe_executions ADD COLUMN IF NOT EXISTS probe_health text;
UPDATE probe_executions e SET probe_health = p.health FROM probes p
 WHERE e.probe_id = p.probe_id AND p.health IS NOT NULL AND e.run_id = (
   SELECT l.run_id FROM probe_executions l WHERE l.probe_id = e.probe_id
    AND l.judged_at IS NOT NULL ORDER BY l.slot DESC LIMIT 1);
""")


def last_executions(conn: psycopg.Connection) -> dict[str, tuple[int, str, datetime]]:
    """probe id -> (slot, run id, started at) of its latest execution."""
    rows = conn.execute(
        "SELECT DISTINCT ON (probe_id) probe_id, slot, run_id, started_at FROM probe_executions"
        " ORDER BY probe_id, slot DESC"
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def claim_execution(
    conn: psycopg.Connection, probe_id: str, slot: int, run_id: str, last: int | None
) -> bool:
    """Add the execution if the probe's latest is still the one the caller decided
    after (`last`, its slot; None: none yet), i.e. no other API process claimed this
    slot or any since; True: the caller claimed it and starts it."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('probe_executions:' || %s))", (probe_id,))
    cur = conn.execute(
        "INSERT INTO probe_executions (run_id, probe_id, slot) SELECT %(run)s, %(probe)s, %(slot)s"
        " WHERE NOT EXISTS (SELECT 1 FROM probe_executions WHERE probe_id = %(probe)s"
        " AND (%(last)s::bigint IS NULL OR slot > %(last)s)) ON CONFLICT DO NOTHING",
        {"run": run_id, "probe": probe_id, "slot": slot, "last": last},
    )
    return cur.rowcount == 1


def probe_of_run(conn: psycopg.Connection, run_id: str) -> str | None:
    row = conn.execute(
        "SELECT probe_id FROM probe_executions WHERE run_id = %s", (run_id,)
    ).fetchone()
    return row[0] if row else None


def unjudged(conn: psycopg.Connection, probe_id: str) -> list[tuple[str, int, datetime]]:
    """(run id, slot, started at) of the probe's executions not judged yet, oldest first."""
    rows = conn.execute(
        "SELECT run_id, slot, started_at FROM probe_executions"
        " WHERE probe_id = %s AND judged_at IS NULL ORDER BY slot",
        (probe_id,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def record(conn: psycopg.Connection, run_id: str, judged: dict[str, Any]) -> None:
    """An execution's judgement (health, reason, mos, post_dial_delay_ms, success_pct)
    and the probe's health after it (probe_health)."""
    conn.execute(
        "UPDATE probe_executions SET judged_at = now(), health = %(health)s,"
        " reason = %(reason)s, mos = %(mos)s, post_dial_delay_ms = %(post_dial_delay_ms)s,"
        " success_pct = %(success_pct)s, probe_health = %(probe_health)s"
        " WHERE run_id = %(run_id)s",
        judged | {"run_id": run_id},
    )


def before(
    conn: psycopg.Connection, probe_id: str, slot: int, n: int
) -> tuple[str | None, list[str]]:
    """What the probe's executions before `slot` decided: its health after them (None:
    never judged) and the health of the last `n` judged ones, oldest first (those the
    platform could not judge are skipped, as probe_core.settle skips them). Only rows
    before the slot: a process judging an execution another one has just recorded
    decides exactly as that one did."""
    row = conn.execute(
        "SELECT probe_health FROM probe_executions WHERE probe_id = %s AND slot < %s"
        " AND probe_health IS NOT NULL ORDER BY slot DESC LIMIT 1",
        (probe_id, slot),
    ).fetchone()
    rows = conn.execute(
        "SELECT health FROM probe_executions WHERE probe_id = %s AND slot < %s"
        " AND health IS NOT NULL ORDER BY slot DESC LIMIT %s",
        (probe_id, slot, n),
    ).fetchall()
    return (row[0] if row else None), [r[0] for r in reversed(rows)]


_HISTORY = (
    "SELECT run_id, started_at, judged_at, health, reason, mos, post_dial_delay_ms,"
    " success_pct, EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.run_id)"
    " FROM probe_executions e WHERE probe_id = %s ORDER BY slot DESC LIMIT %s"
)
HISTORY_KEYS = (
    "run_id",
    "started_at",
    "judged_at",
    "health",
    "reason",
    "mos",
    "post_dial_delay_ms",
    "success_pct",
    "run_kept",  # False once retention deleted the execution's run
)


def history(conn: psycopg.Connection, probe_id: str, limit: int) -> list[dict[str, Any]]:
    """The probe's executions, newest first."""
    rows = conn.execute(_HISTORY, (probe_id, limit)).fetchall()
    return [dict(zip(HISTORY_KEYS, r, strict=True)) for r in rows]


def set_health(
    conn: psycopg.Connection, probe_id: str, health: str, since: datetime, run_id: str
) -> None:
    """The folded health (callmeter_projections.probes) as the pages read it."""
    conn.execute(
        "UPDATE probes SET health = %s, health_since = %s, health_run = %s"
        " WHERE probe_id = %s AND (health_since IS NULL OR health_since <= %s)",
        (health, since, run_id, probe_id, since),
    )


# --- a project's webhooks and status page ----------------------------------------------


def project_webhooks(conn: psycopg.Connection, project: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT url, secret_ref FROM project_webhooks WHERE project = %s ORDER BY position",
        (project,),
    ).fetchall()
    return [{"url": u, "secret_ref": ref} for u, ref in rows]


def lock_project_webhooks(conn: psycopg.Connection, project: str) -> None:
    """Serialise changes of one project's webhooks (until the transaction ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('project_webhooks:' || %s))", (project,))


def set_project_webhooks(
    conn: psycopg.Connection, project: str, hooks: list[dict[str, Any]]
) -> None:
    conn.execute("DELETE FROM project_webhooks WHERE project = %s", (project,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO project_webhooks (project, position, url, secret_ref)"
            " VALUES (%s, %s, %s, %s)",
            [(project, i, h["url"], h.get("secret_ref")) for i, h in enumerate(hooks)],
        )


def status_slug(conn: psycopg.Connection, project: str) -> str | None:
    row = conn.execute("SELECT slug FROM status_pages WHERE project = %s", (project,)).fetchone()
    return row[0] if row else None


def project_of_slug(conn: psycopg.Connection, slug: str) -> str | None:
    row = conn.execute("SELECT project FROM status_pages WHERE slug = %s", (slug,)).fetchone()
    return row[0] if row else None


def set_status_page(conn: psycopg.Connection, project: str, public: bool) -> str | None:
    """Opt in (an unguessable slug, kept while it stays public) or out; the slug."""
    if not public:
        conn.execute("DELETE FROM status_pages WHERE project = %s", (project,))
        return None
    conn.execute(
        "INSERT INTO status_pages (project, slug) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (project, random.token_urlsafe(12)),
    )
    return status_slug(conn, project)
