"""Read queries the pages and the API need beyond callmeter_storage.results.

Each takes an open connection and returns plain data; the routes run them in
a worker thread through service.query.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

import psycopg

from callmeter_events import GOOD_OUTCOMES, OUTCOMES, PHASES
from callmeter_storage import results, stats
from callmeter_storage.rollup_deltas import endpoint_metric_sql

from .endpoint_views import ListQuery

# Receive side: the listening quality each endpoint experienced, from the rollup
# ingest keeps (a few rows per endpoint), never a scan of the samples.
_MOS_OF = (
    "SELECT endpoint_id, sum(total) / sum(n) AS mos"
    f" FROM ({endpoint_metric_sql('mos')}) r GROUP BY endpoint_id"
)
SERIES_KEYS = ("mos", "jitter_ms", "fraction_lost", "rtt_ms", "bitrate_bps")


def mos_per_endpoint(conn: psycopg.Connection[Any], run_id: str) -> dict[str, float]:
    rows = conn.execute(_MOS_OF, {"run_id": run_id}).fetchall()
    return {r[0]: float(r[1]) for r in rows}


def run_overview(conn: psycopg.Connection[Any], run_id: str) -> tuple[Any, ...] | None:
    """Everything the run page shows, read in one connection checkout."""
    run = results.run_row(conn, run_id)
    if run is None:
        return None
    return (
        run,
        results.endpoint_rows(conn, run_id),
        results.summary(conn, run_id),
        mos_per_endpoint(conn, run_id),
    )


def endpoint_doc(conn: psycopg.Connection[Any], run_id: str, endpoint_id: str) -> Any:
    row = conn.execute(
        "SELECT doc FROM endpoints WHERE run_id = %s AND endpoint_id = %s", (run_id, endpoint_id)
    ).fetchone()
    return row[0] if row else None


def endpoint_series(
    conn: psycopg.Connection[Any], run_id: str, endpoint_id: str
) -> dict[str, list[dict[str, Any]]]:
    """Per-second samples of one endpoint by direction, keyed by seconds since its first."""
    rows = conn.execute(
        f"SELECT direction, extract(epoch FROM time), {', '.join(SERIES_KEYS)}"
        " FROM metric_samples WHERE run_id = %s AND endpoint_id = %s ORDER BY time",
        (run_id, endpoint_id),
    ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {"recv": [], "send": []}
    t0 = float(rows[0][1]) if rows else 0.0
    for direction, epoch, *values in rows:
        point: dict[str, float | None] = {"t": round(float(epoch) - t0, 3)}
        point.update(
            {k: None if v is None else float(v) for k, v in zip(SERIES_KEYS, values, strict=True)}
        )
        out[direction].append(point)
    return out


_PROBE_RUN = "(SELECT 1 FROM probe_executions x WHERE x.run_id = runs.run_id)"


def page_runs(
    conn: psycopg.Connection[Any],
    test_id: str | None,
    limit: int,
    offset: int,
    only: tuple[str, ...] | None = None,
    hidden: tuple[str, ...] = (),
    probes: bool | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, one page, and the total; of one test, of the projects in `only`
    (None: every one) but those `hidden`; probe executions only (True), none (False)
    or both (None)."""
    conds: list[str] = []
    args: list[Any] = []
    if probes is not None:
        conds.append(f"{'' if probes else 'NOT '}EXISTS {_PROBE_RUN}")
    if test_id:
        conds.append("test_id = %s")
        args.append(test_id)
    if only is not None:
        conds.append("doc->'definition'->>'project' = ANY(%s)")
        args.append(list(only))
    if hidden:
        conds.append("NOT doc->'definition'->>'project' = ANY(%s)")
        args.append(list(hidden))
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    total = conn.execute(f"SELECT count(*) FROM runs {where}", args).fetchone()
    rows = conn.execute(
        f"SELECT doc FROM runs {where} ORDER BY created_at DESC, run_id LIMIT %s OFFSET %s",
        [*args, limit, offset],
    ).fetchall()
    return [r[0] for r in rows], int(total[0]) if total else 0


# --- the run's endpoints, counted and paged in SQL ------------------------------------
# A run page shows counts and one page of endpoints: both are read in SQL, so a view
# costs the same at 10,000 endpoints as at 10 (no document per endpoint is decoded).
# The same filters and order as endpoint_views.select_endpoints (which replay, folding
# events in memory, uses); tests/integration/test_endpoint_listing.py holds them equal.

Count = tuple[str, str, str | None, str | None, int]  # group, role, phase, outcome, n


class ListingPage(NamedTuple):
    docs: list[dict[str, Any]]  # endpoint documents, each with its "mos"
    total: int  # matching endpoints on every page
    page: int
    pages: int
    query: ListQuery


def endpoint_counts(conn: psycopg.Connection[Any], run_id: str) -> list[Count]:
    rows = conn.execute(
        "SELECT group_name, doc->>'role', phase, outcome, count(*) FROM endpoints"
        " WHERE run_id = %s GROUP BY 1, 2, 3, 4",
        (run_id,),
    ).fetchall()
    return [(g, r, p, o, int(n)) for g, r, p, o, n in rows]


def sip_code_counts(conn: psycopg.Connection[Any], run_id: str) -> Counter[int | None]:
    """Endpoints by their final SIP response code (None: no final response)."""
    rows = conn.execute(
        "SELECT sip_code, count(*) FROM endpoints WHERE run_id = %s GROUP BY 1", (run_id,)
    ).fetchall()
    return Counter({code: int(n) for code, n in rows})


def group_mos(conn: psycopg.Connection[Any], run_id: str) -> dict[str, float]:
    """Per group, the mean of its endpoints' MOS (as group_breakdown averages them)."""
    rows = conn.execute(
        f"SELECT e.group_name, avg(m.mos) FROM ({_MOS_OF}) m"
        " JOIN endpoints e ON e.run_id = %(run_id)s AND e.endpoint_id = m.endpoint_id"
        " GROUP BY 1",
        {"run_id": run_id},
    ).fetchall()
    return {g: float(v) for g, v in rows}


_NATURAL = ("e.group_name", "length(e.endpoint_id)", "e.endpoint_id")
_SORT_VALUE = {
    "group": "e.group_name",
    "phase": "array_position(%(phases)s::text[], e.phase)",
    "outcome": "array_position(%(outcomes)s::text[], e.outcome)",
    "sip_code": "e.sip_code",
    "mos": "m.mos",
    "setup": "(e.doc->>'call_setup_ms')::float8",
}
# What the text filter looks in: the values the list shows.
_TEXT = (
    "concat_ws(' ', e.endpoint_id, e.group_name, e.doc->>'role', e.phase, e.outcome,"
    " e.doc->>'reason', e.sip_code::text, e.doc->>'worker_id', e.doc->>'contact_uri',"
    " e.doc->>'target_uri', e.doc->>'codec')"
)


def _where(query: ListQuery) -> tuple[str, dict[str, Any]]:
    conds: list[str] = ["e.run_id = %(run_id)s"]
    args: dict[str, Any] = {}
    if query.phase:
        conds.append("e.phase = %(phase)s")
        args["phase"] = query.phase
    if query.outcome == "failed":
        conds.append("e.outcome IS NOT NULL AND NOT e.outcome = ANY(%(good)s)")
        args["good"] = sorted(GOOD_OUTCOMES)
    elif query.outcome:
        conds.append("e.outcome = %(outcome)s")
        args["outcome"] = query.outcome
    if query.group:
        conds.append("e.group_name = %(group)s")
        args["group"] = query.group
    if query.q:
        escaped = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append(f"{_TEXT} ILIKE %(q)s")
        args["q"] = f"%{escaped}%"
    return " AND ".join(conds), args


def _order(query: ListQuery) -> str:
    desc = " DESC" if query.order == "desc" else ""
    if query.sort == "endpoint":
        return ", ".join(f"{c}{desc}" for c in _NATURAL)
    value = _SORT_VALUE[query.sort]
    return f"({value}) IS NULL, {value}{desc}, " + ", ".join(_NATURAL)


def _args(query: ListQuery, run_id: str) -> tuple[str, dict[str, Any]]:
    where, args = _where(query)
    return where, args | {"run_id": run_id, "phases": list(PHASES), "outcomes": list(OUTCOMES)}


def endpoint_total(conn: psycopg.Connection[Any], run_id: str, query: ListQuery) -> int:
    """How many endpoints match `query` (its filters never look at MOS: no join)."""
    where, args = _args(query, run_id)
    row = conn.execute(f"SELECT count(*) FROM endpoints e WHERE {where}", args).fetchone()
    return int(row[0]) if row else 0


def _endpoint_page(
    conn: psycopg.Connection[Any], run_id: str, query: ListQuery, offset: int, limit: int
) -> list[dict[str, Any]]:
    where, args = _args(query, run_id)
    rows = conn.execute(
        f"SELECT e.doc, m.mos FROM endpoints e LEFT JOIN ({_MOS_OF}) m"
        f" ON m.endpoint_id = e.endpoint_id WHERE {where}"
        f" ORDER BY {_order(query)} OFFSET %(offset)s LIMIT %(limit)s",
        args | {"offset": offset, "limit": limit},
    ).fetchall()
    return [{**doc, "mos": None if m is None else float(m)} for doc, m in rows]


def endpoint_listing(
    conn: psycopg.Connection[Any], run_id: str, query: ListQuery, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Endpoint documents (with their "mos") matching `query`, in its order, from
    `offset`, at most `limit`; and how many match in all."""
    return _endpoint_page(conn, run_id, query, offset, limit), endpoint_total(conn, run_id, query)


def listing_page(conn: psycopg.Connection[Any], run_id: str, query: ListQuery) -> ListingPage:
    """The query's page of the list (the last one when it asks beyond), as the pages show it."""
    total = endpoint_total(conn, run_id, query)
    pages = max(1, -(-total // query.per_page))
    page = min(query.page, pages)
    docs = _endpoint_page(conn, run_id, query, (page - 1) * query.per_page, query.per_page)
    return ListingPage(docs, total, page, pages, query)


class RunPage(NamedTuple):
    """What a run page shows, read in one checkout."""

    run: dict[str, Any]
    counts: list[Count]
    summary: dict[str, Any]
    group_mos: dict[str, float]
    listing: ListingPage
    quality: dict[str, Any]  # stats.run_quality: a finished run's results reuse it


def run_page(conn: psycopg.Connection[Any], run_id: str, query: ListQuery) -> RunPage | None:
    """What a run page shows: the run, endpoint counts, summary, MOS per group, and
    `query`'s page of the endpoint list."""
    run = results.run_row(conn, run_id)
    if run is None:
        return None
    q = stats.run_quality(conn, run_id)
    return RunPage(
        run,
        endpoint_counts(conn, run_id),
        results.summary_of(q, stats.speech_figures(conn, run_id)),
        group_mos(conn, run_id),
        listing_page(conn, run_id, query),
        q,
    )
