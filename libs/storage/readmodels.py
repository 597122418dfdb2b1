"""Read-model tables written from the projections, position in the same transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from callmeter_events import (
    Event,
    PlatformOutage,
    RunCreated,
    RunDispatching,
    TestDeleted,
    TestSaved,
    all_run_events,
    all_test_events,
)
from callmeter_projections import EndpointState, RunsProjection, RunState, TestState, apply_test
from callmeter_projections.documents import endpoint_state, run_state, saved_test
from callmeter_projections.documents import to_doc as doc
from callmeter_projections.version import FOLD_VERSION

# Two projections of CALLMETER_EVENTS, each folded from its own subjects with its own
# stored position: a new test is readable without waiting behind every endpoint
# event of every run (a big run's burst took POST /api/v1/tests past its wait).
TESTS, RUNS = "tests", "runs"
SUBJECTS = {TESTS: all_test_events(), RUNS: all_run_events()}
# Advisory locks held, on the writing connections, by the one process that writes
# the read models (runs, then tests); PostgreSQL releases a lock when its session
# ends (the process died).
WRITER_LOCKS = {RUNS: 727_011, TESTS: 727_012}  # apart from every other lock id
# NOTIFY channel: "<projection>:<position>", sent by each write when it commits.
CHANNEL = "read_models"
VERSION_NAME = "read_models"  # projection_versions row: the fold code that wrote them
TERMINAL = ("COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW")
Touched = tuple[str | None, str | None, str | None]


class ReadModels:
    """Folds events in memory and writes the rows they touched, batch by batch."""

    def __init__(self) -> None:
        self.runs = RunsProjection()
        self.tests: dict[str, TestState] = {}
        self.positions = {TESTS: 0, RUNS: 0}

    @property
    def position(self) -> int:
        """The newest event folded, of either projection."""
        return max(self.positions.values())

    def fold(self, seq: int, event: Event) -> list[Touched]:
        """Apply one event; returns the (test, run, endpoint) ids it touched."""
        name = projection_of(event)
        self.positions[name] = max(self.positions[name], seq)
        if isinstance(event, TestSaved | TestDeleted):
            state = apply_test(event, self.tests.get(event.test_id))
            if state is not None:
                self.tests[event.test_id] = state
            return [(event.test_id, None, None)]
        if isinstance(event, PlatformOutage):
            return [(None, run_id, None) for run_id in self.runs.apply_outage(seq, event)]
        before = self.runs.runs.get(getattr(event, "run_id", None) or "")
        run_id, endpoint_id = self.runs.apply(seq, event)
        if run_id and isinstance(event, RunCreated | RunDispatching):
            # These set fields on every endpoint of the run.
            return [(None, run_id, None)] + [(None, run_id, e) for e in self.runs.endpoints[run_id]]
        touched: list[Touched] = [(None, run_id, endpoint_id)]
        if endpoint_id and self.runs.runs.get(run_id or "") is not before:
            touched.append((None, run_id, None))  # the endpoint's event changed its run too
        return touched

    def unknown_run(self, event: Event) -> str | None:
        """The run of an event that is not in memory (settled and evicted), if any."""
        run_id = getattr(event, "run_id", None)
        if run_id is None or isinstance(event, RunCreated) or run_id in self.runs.runs:
            return None
        return str(run_id)

    def restore(self, tests: Iterable[TestState], runs: Iterable[OpenRun]) -> None:
        """Resume from stored rows (in place: the evaluator and webhooks hold self.runs)."""
        self.tests.update((t.test_id, t) for t in tests)
        for run, endpoints in runs:
            self.runs.restore(run, endpoints)

    def evict_settled(self, keep: set[str]) -> int:
        """Forget settled runs whose rows are stored (not in `keep`); returns how many."""
        gone = [r for r, run in self.runs.runs.items() if settled(run) and r not in keep]
        for run_id in gone:
            self.runs.forget(run_id)
        return len(gone)

    def snapshot(self, touched: Iterable[Touched], name: str) -> Snapshot:
        """The current states of the touched rows of projection `name` and the
        position they reflect.

        States are immutable, so the snapshot can be written from another thread
        while the fold goes on.
        """
        tests, runs, endpoints = set(), set(), set()
        for test_id, run_id, endpoint_id in touched:
            if test_id:
                tests.add(test_id)
            if run_id and endpoint_id:
                endpoints.add((run_id, endpoint_id))
            elif run_id:  # the run's own row: only when its state changed (fold says)
                runs.add(run_id)
        if name == TESTS:
            # (a TestDeleted of a test whose saves were purged has no state to write)
            states = [self.tests[t] for t in sorted(tests) if t in self.tests]
            return Snapshot(TESTS, self.positions[TESTS], states)
        known = self.runs.runs  # a run deleted meanwhile has nothing left to write
        return Snapshot(
            RUNS,
            self.positions[RUNS],
            [],
            [known[r] for r in sorted(runs) if r in known],
            [self.runs.endpoints[r][e] for r, e in sorted(endpoints) if r in known],
        )

    def write(self, conn: psycopg.Connection[Any], touched: Iterable[Touched]) -> None:
        """Both projections' touched rows and positions, in one transaction."""
        touched = list(touched)
        with conn.transaction():
            for name in (RUNS, TESTS):
                write_snapshot(conn, self.snapshot(touched, name))


def projection_of(event: Event) -> str:
    """Which read-model projection folds `event`."""
    return TESTS if isinstance(event, TestSaved | TestDeleted) else RUNS


OpenRun = tuple[RunState, list[EndpointState]]


def settled(run: RunState) -> bool:
    """Nothing more is expected for the run: finished and, if it ran, evaluated.

    Its rows stay; memory keeps only runs still in flight (plus those the
    evaluator has not judged yet). A late event for a settled run is folded
    onto its state read back from the rows (load_run).
    """
    return run.terminal and (run.evaluation is not None or run.status == "CANNOT_RUN_FOR_NOW")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    name: str  # TESTS or RUNS
    position: int
    tests: list[TestState] = dataclasses.field(default_factory=list)
    runs: list[RunState] = dataclasses.field(default_factory=list)
    endpoints: list[EndpointState] = dataclasses.field(default_factory=list)


def write_snapshot(conn: psycopg.Connection[Any], snap: Snapshot) -> None:
    """Upsert the rows and the position in one transaction, and tell listeners on
    commit. A position behind the stored one is refused by the table's trigger
    (psycopg.errors.CheckViolation) and nothing of the snapshot is written."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO tests VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (test_id) DO UPDATE"
            " SET name = EXCLUDED.name, doc = EXCLUDED.doc, deleted = EXCLUDED.deleted,"
            " updated_at = EXCLUDED.updated_at",
            [
                (t.test_id, t.definition.name, Jsonb(doc(t)), t.deleted, t.created_at, t.updated_at)
                for t in snap.tests
            ],
        )
        cur.executemany(
            "INSERT INTO runs VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE"
            " SET status = EXCLUDED.status, doc = EXCLUDED.doc",
            [(r.run_id, r.test_id, r.status, r.created_at, Jsonb(doc(r))) for r in snap.runs],
        )
        cur.executemany(
            "INSERT INTO endpoints VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (run_id, endpoint_id) DO UPDATE SET phase = EXCLUDED.phase,"
            " outcome = EXCLUDED.outcome, sip_code = EXCLUDED.sip_code, doc = EXCLUDED.doc",
            [
                (e.run_id, e.endpoint_id, e.group, e.phase, e.outcome, e.sip_code, Jsonb(doc(e)))
                for e in snap.endpoints
            ],
        )
        cur.execute(
            "INSERT INTO projection_position VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq",
            (snap.name, snap.position),
        )
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{snap.name}:{snap.position}"))


def stored_position(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT seq FROM projection_position WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def take_writer_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    """Hold projection `name`'s writer lock on `conn` until it closes, if no other
    session holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCKS[name],)).fetchone()
    return bool(row and row[0])


def drop_views(conn: psycopg.Connection[Any], version: str = FOLD_VERSION) -> None:
    """Empty the read models and reset the positions; the next fold (by the code of
    `version`) rewrites them from sequence 1."""
    with conn.transaction():
        conn.execute("TRUNCATE tests, runs, endpoints")
        conn.execute("DELETE FROM projection_position WHERE name = ANY(%s)", ([TESTS, RUNS],))
        conn.execute(
            "INSERT INTO projection_versions VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version",
            (VERSION_NAME, version),
        )


def stored_version(conn: psycopg.Connection[Any]) -> str | None:
    """The FOLD_VERSION that wrote the read models (None: unknown, rebuild them)."""
    row = conn.execute(
        "SELECT version FROM projection_versions WHERE name = %s", (VERSION_NAME,)
    ).fetchone()
    return str(row[0]) if row else None


def _endpoints_of(conn: psycopg.Connection[Any], run_ids: list[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {r: [] for r in run_ids}
    rows = conn.execute(
        "SELECT run_id, doc FROM endpoints WHERE run_id = ANY(%s) ORDER BY run_id, endpoint_id",
        (run_ids,),
    )
    for run_id, ep in rows:
        found[run_id].append(endpoint_state(ep))
    return found


def load_open(conn: psycopg.Connection[Any]) -> tuple[list[TestState], list[OpenRun]]:
    """What a projector keeps in memory: every test and the runs not settled yet."""
    tests = [saved_test(d) for (d,) in conn.execute("SELECT doc FROM tests ORDER BY test_id")]
    runs = [
        run_state(d)
        for (d,) in conn.execute(
            "SELECT doc FROM runs WHERE status <> ALL(%s) OR (status <> 'CANNOT_RUN_FOR_NOW'"
            " AND COALESCE(doc->'evaluation', 'null') = 'null') ORDER BY run_id",
            (list(TERMINAL),),
        )
    ]
    eps = _endpoints_of(conn, [r.run_id for r in runs])
    return tests, [(r, eps[r.run_id]) for r in runs]


def load_run(conn: psycopg.Connection[Any], run_id: str) -> OpenRun | None:
    """A run's state (and its endpoints') as last written, or None if there is none."""
    row = conn.execute("SELECT doc FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    if row is None:
        return None
    return run_state(row[0]), _endpoints_of(conn, [run_id])[run_id]
