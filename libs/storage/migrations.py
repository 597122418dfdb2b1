"""Versioned schema owned by the project: applied at start-up, safe to apply twice.

TimescaleDB mode when `CREATE EXTENSION timescaledb` works (hypertable),
plain mode otherwise (native range partitioning by day). The mode is stored
in `storage_mode` and logged by every service that migrates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from callmeter_vocabulary.metrics import BY_KEY as CATALOGUE_BY_KEY
from callmeter_vocabulary.metrics import CATALOGUE

from . import calls, partitions, probes, rollup_deltas, timescale, traces
from .samples import TIMING_KEYS
from .settings import StorageSettings

log = logging.getLogger(__name__)

_SQL_TYPE = {"float": "double precision", "int": "bigint", "text": "text"}
MIGRATION_LOCK = 727_001  # advisory lock id: one migrator at a time


def _metric_columns() -> str:
    return ",\n".join(f"    {m.key} {_SQL_TYPE[m.kind]}" for m in CATALOGUE)


def _try_timescale(conn: psycopg.Connection) -> bool:
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
    except psycopg.Error:
        return False


def m001_samples(conn: psycopg.Connection) -> None:
    timescale = _try_timescale(conn)
    partition = "" if timescale else " PARTITION BY RANGE (time)"
    conn.execute(f"""
CREATE TABLE metric_samples (
    time timestamptz NOT NULL,
    run_id text NOT NULL,
    endpoint_id text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('send', 'recv')),
    seq integer NOT NULL,
{_metric_columns()},
    PRIMARY KEY (run_id, endpoint_id, direction, time)
){partition}""")
    if timescale:
        conn.execute("SELECT create_hypertable('metric_samples', 'time')")
    else:
        conn.execute("CREATE TABLE metric_samples_default PARTITION OF metric_samples DEFAULT")
    conn.execute("CREATE INDEX ON metric_samples (run_id, time)")
    conn.execute("CREATE TABLE storage_mode (mode text NOT NULL)")
    conn.execute("INSERT INTO storage_mode VALUES (%s)", ("timescaledb" if timescale else "plain",))


def m002_read_models(conn: psycopg.Connection) -> None:
    conn.execute("""
CREATE TABLE projection_position (name text PRIMARY KEY, seq bigint NOT NULL);
CREATE TABLE tests (
    test_id text PRIMARY KEY, name text NOT NULL, doc jsonb NOT NULL, deleted boolean NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
);
CREATE TABLE runs (
    run_id text PRIMARY KEY, test_id text NOT NULL, status text NOT NULL,
    created_at timestamptz NOT NULL, doc jsonb NOT NULL
);
CREATE INDEX ON runs (test_id, created_at);
CREATE TABLE endpoints (
    run_id text NOT NULL, endpoint_id text NOT NULL, group_name text NOT NULL,
    phase text, outcome text, sip_code integer, doc jsonb NOT NULL,
    PRIMARY KEY (run_id, endpoint_id)
);
""")


def m003_rollups(conn: psycopg.Connection) -> None:
    # group_name is filled by ingest from the endpoint id, so per-group series
    # need no join.
    conn.execute("ALTER TABLE metric_samples ADD COLUMN group_name text")
    timings = ",\n".join(f"    {k} {_SQL_TYPE[CATALOGUE_BY_KEY[k].kind]}" for k in TIMING_KEYS)
    conn.execute(f"""
CREATE TABLE rollup_second (
    run_id text NOT NULL, group_name text NOT NULL, second timestamptz NOT NULL,
    metric text NOT NULL, n bigint NOT NULL, total double precision NOT NULL,
    lo double precision NOT NULL, hi double precision NOT NULL,
    PRIMARY KEY (run_id, group_name, second, metric)
);
CREATE TABLE rollup_endpoint (
    run_id text NOT NULL, endpoint_id text NOT NULL, metric text NOT NULL,
    group_name text NOT NULL, n bigint NOT NULL, total double precision NOT NULL,
    lo double precision NOT NULL, hi double precision NOT NULL,
    PRIMARY KEY (run_id, endpoint_id, metric)
);
CREATE TABLE rollup_hist (
    run_id text NOT NULL, endpoint_id text NOT NULL, metric text NOT NULL,
    bin smallint NOT NULL, group_name text NOT NULL, n bigint NOT NULL,
    PRIMARY KEY (run_id, endpoint_id, metric, bin)
);
CREATE TABLE call_timings (
    run_id text NOT NULL, endpoint_id text NOT NULL, group_name text NOT NULL,
    last_time timestamptz NOT NULL,
{timings},
    PRIMARY KEY (run_id, endpoint_id)
);
""")
    mode = conn.execute("SELECT mode FROM storage_mode").fetchone()
    if mode and mode[0] == "timescaledb":
        timescale.setup(conn)
    else:
        conn.execute(partitions.ENSURE_FUNCTION)


# rollup_hist_delta as m004 made it (m026 replaced it): one row per endpoint, write and
# combination of the four bins, counted; and the rollup_hist view over it.
_BINNED = rollup_deltas.BINNED_METRICS
_HIST_DELTA_V1 = (
    "run_id text NOT NULL, endpoint_id text NOT NULL, group_name text NOT NULL, "
    + ", ".join(f"{m}_bin smallint" for m in _BINNED)
    + ", n bigint NOT NULL"
)
_HIST_VIEW_V1 = (
    "CREATE VIEW rollup_hist AS SELECT * FROM rollup_hist_folded UNION ALL"
    " SELECT d.run_id, d.endpoint_id, m.metric, m.bin, d.group_name, d.n"
    " FROM rollup_hist_delta d CROSS JOIN LATERAL (VALUES "
    + ", ".join(f"('{m}', d.{m}_bin)" for m in _BINNED)
    + ") AS m(metric, bin) WHERE m.bin IS NOT NULL"
)


def m004_rollup_deltas(conn: psycopg.Connection) -> None:
    # Upserting every write's rollup rows cost ingest more than storing the samples
    # (an upsert of a histogram row ~7-13 us, an appended row ~1.5 us). Ingest now
    # appends wide delta rows and folds them now and then (compaction.py); a
    # rollup_* view adds both, so readers see every stored sample at once. No
    # index on the deltas: folding keeps them small, and each would cost every write.
    for name in ("rollup_second", "rollup_endpoint"):
        conn.execute(f"ALTER TABLE {name} RENAME TO {name}_folded")
        conn.execute(f"CREATE TABLE {name}_delta ({rollup_deltas.DELTA_TABLES[name + '_delta']})")
        conn.execute(rollup_deltas.view_sql(name))
    conn.execute("ALTER TABLE rollup_hist RENAME TO rollup_hist_folded")
    conn.execute(f"CREATE TABLE rollup_hist_delta ({_HIST_DELTA_V1})")
    conn.execute(_HIST_VIEW_V1)


def m026_hist_deltas_as_arrays(conn: psycopg.Connection) -> None:
    # One histogram delta row per endpoint and write, each metric's bins and counts as
    # arrays, instead of one per combination of the four bins (about one per receive
    # sample: half as many delta rows as samples, each unpivoted into 4 by the fold).
    # The rows not folded yet are carried over as they are: one bin each.
    carried = ", ".join(
        f"CASE WHEN {m}_bin IS NULL THEN '{{}}'::smallint[] ELSE ARRAY[{m}_bin] END,"
        f" CASE WHEN {m}_bin IS NULL THEN '{{}}'::bigint[] ELSE ARRAY[n] END"
        for m in _BINNED
    )
    conn.execute(
        f"CREATE TABLE rollup_hist_delta_v2 ({rollup_deltas.DELTA_TABLES['rollup_hist_delta']})"
    )
    conn.execute(
        "INSERT INTO rollup_hist_delta_v2"
        f" SELECT run_id, endpoint_id, group_name, {carried} FROM rollup_hist_delta"
    )
    conn.execute("DROP VIEW rollup_hist")
    conn.execute("DROP TABLE rollup_hist_delta")
    conn.execute("ALTER TABLE rollup_hist_delta_v2 RENAME TO rollup_hist_delta")
    conn.execute(rollup_deltas.view_sql("rollup_hist"))


def m010_webhook_deliveries(conn: psycopg.Connection) -> None:
    conn.execute("""
CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY, run_id text, event_id text NOT NULL, event_type text NOT NULL,
    url text NOT NULL, attempt integer NOT NULL, status_code integer, error text NOT NULL,
    ok boolean NOT NULL, attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON webhook_deliveries (run_id, attempted_at);
CREATE INDEX ON webhook_deliveries (event_id, url) WHERE ok;
""")


def m011_webhook_claims(conn: psycopg.Connection) -> None:
    # Which API replica is delivering (event, url), until when: one sender per delivery.
    conn.execute("""
CREATE TABLE webhook_claims (
    event_id text NOT NULL, url text NOT NULL, owner text NOT NULL,
    until timestamptz NOT NULL, PRIMARY KEY (event_id, url)
)""")


def m012_forward_only_positions(conn: psycopg.Connection) -> None:
    # The read models are two projections now (tests, runs), each with a position;
    # both start where the single one was. A stored position only moves forward: a
    # writer whose fold is behind it (a stale or second writer) must not take it
    # back. Deleting the row (a rebuild) starts again from nothing.
    conn.execute("""
INSERT INTO projection_position
    SELECT p.name, old.seq FROM projection_position old, (VALUES ('tests'), ('runs')) p (name)
    WHERE old.name = 'read_models';
DELETE FROM projection_position WHERE name = 'read_models';
CREATE FUNCTION projection_position_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'position of % may only move forward: % is stored, % was written',
            OLD.name, OLD.seq, NEW.seq USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER forward_only BEFORE UPDATE ON projection_position
    FOR EACH ROW EXECUTE FUNCTION projection_position_forward();
""")


def m013_catalogue_columns(conn: psycopg.Connection) -> None:
    # m001 made one column per catalogue key of its day; a key added since (e.g.
    # simulated_drops) gets its column here. A no-op on a database made after it.
    for m in CATALOGUE:
        conn.execute(
            f"ALTER TABLE metric_samples ADD COLUMN IF NOT EXISTS {m.key} {_SQL_TYPE[m.kind]}"
        )


def m020_projection_versions(conn: psycopg.Connection) -> None:
    # Which fold code wrote the read models: another one rebuilds them from sequence 1.
    conn.execute("CREATE TABLE projection_versions (name text PRIMARY KEY, version text NOT NULL)")


def m021_sip_messages(conn: psycopg.Connection) -> None:
    mode = conn.execute("SELECT mode FROM storage_mode").fetchone()
    traces.create(conn, timescale=bool(mode and mode[0] == "timescaledb"))


def m025_no_continuous_aggregates(conn: psycopg.Connection) -> None:
    # TimescaleDB mode kept per-second continuous aggregates beside the rollups, for
    # /series only; the rollups answer it in both modes (docs/architecture.md).
    mode = conn.execute("SELECT mode FROM storage_mode").fetchone()
    if mode and mode[0] == "timescaledb":
        timescale.drop_continuous_aggregates(conn)


def m030_secrets(conn: psycopg.Connection) -> None:
    # data_key: the secret's own key wrapped by the master key; deleting the row shreds it
    conn.execute("""
CREATE TABLE secrets (
    secret_id text PRIMARY KEY, project text NOT NULL, owner text NOT NULL,
    kind text NOT NULL, data_key bytea NOT NULL, ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON secrets (owner);
""")


def m031_registrars_and_pools(conn: psycopg.Connection) -> None:
    # project resources; account passwords are in `secrets` (owner pool:<id>)
    conn.execute("""
CREATE TABLE registrars (
    registrar_id text PRIMARY KEY, project text NOT NULL, name text NOT NULL,
    doc jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project, name)
);
CREATE TABLE account_pools (
    pool_id text PRIMARY KEY, project text NOT NULL, name text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (project, name)
);
CREATE TABLE pool_accounts (
    pool_id text NOT NULL REFERENCES account_pools ON DELETE CASCADE,
    position integer NOT NULL, username text NOT NULL, auth_username text,
    password_ref text, PRIMARY KEY (pool_id, username)
);
""")


def m032_sessions(conn: psycopg.Connection) -> None:
    # Browser sessions: the SHA-256 of the cookie's random token, never the token.
    # Operational state, not facts: logins and logouts are audit events in CALLMETER_ACCESS.
    conn.execute("""
CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    username text NOT NULL,
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (username);
CREATE TABLE api_key_usage (key_id text PRIMARY KEY, last_used_at timestamptz NOT NULL);
""")


def m034_audio_uploads(conn: psycopg.Connection) -> None:
    # Which project uploaded which audio (the WAV itself is in the NATS object store,
    # by content hash): a test may name only audio uploaded into its own project.
    conn.execute("""
CREATE TABLE audio_uploads (
    project text NOT NULL, ref text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (project, ref)
);
CREATE INDEX audio_uploads_by_ref ON audio_uploads (ref);
""")


def m040_call_records(conn: psycopg.Connection) -> None:
    calls.create(conn)


def m050_probes(conn: psycopg.Connection) -> None:
    probes.create(conn)


def m051_probe_health_per_execution(conn: psycopg.Connection) -> None:
    probes.add_probe_health(conn)


MIGRATIONS: list[tuple[int, str, Callable[[psycopg.Connection], None]]] = [
    (1, "metric samples", m001_samples),
    (2, "read models", m002_read_models),
    (3, "rollups, call timings, partition upkeep", m003_rollups),
    (4, "rollups as folded rows plus appended deltas", m004_rollup_deltas),
    (10, "webhook delivery log", m010_webhook_deliveries),  # 5-9 left for storage work in flight
    (11, "webhook delivery claims", m011_webhook_claims),
    (12, "read-model positions per projection, only forward", m012_forward_only_positions),
    (13, "columns for catalogue keys added since m001", m013_catalogue_columns),
    (20, "fold version of the read models", m020_projection_versions),
    (21, "SIP messages", m021_sip_messages),
    (25, "one aggregation path: no continuous aggregates", m025_no_continuous_aggregates),
    (26, "histogram deltas as arrays, one row per endpoint and write", m026_hist_deltas_as_arrays),
    (30, "secret store", m030_secrets),  # 22-24, 27-29 left for work in flight
    (31, "registrars and SIP account pools", m031_registrars_and_pools),
    (32, "sessions and API key usage", m032_sessions),
    (34, "audio uploads per project", m034_audio_uploads),
    (40, "call records", m040_call_records),  # 32-39 left for work in flight
    (50, "probes, project webhooks, status pages", m050_probes),  # 41-49 left for work in flight
    (51, "the probe's health after each execution", m051_probe_health_per_execution),
]


def migrate(url: str, settings: StorageSettings | None = None) -> str:
    """Apply missing migrations under an advisory lock; returns the storage mode.

    Concurrent callers (every service migrates at start-up) queue on the lock and
    find nothing left to do. Then the start-up upkeep: day partitions ahead and
    the retention policy (plain mode) or the TimescaleDB retention policy.
    """
    settings = settings or StorageSettings()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, step in MIGRATIONS:
                if version in done:
                    continue
                with conn.transaction():
                    step(conn)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                log.info("applied migration %03d %s", version, name)
            row = conn.execute("SELECT mode FROM storage_mode").fetchone()
            if row and row[0] == "timescaledb":
                timescale.apply_retention(conn, settings.retention_days)
            else:
                partitions.ensure_ahead(conn, settings.partition_days_ahead)
                partitions.drop_expired(conn, settings.retention_days)
                traces.drop_expired(conn, settings.retention_days)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    mode = row[0] if row else "plain"
    log.info("storage mode: %s", mode)
    return str(mode)
