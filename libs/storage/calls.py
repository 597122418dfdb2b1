"""Call records in PostgreSQL: one row per call a caller made (CallRecorded).

metrics-ingest writes them from CALLMETER_EVENTS (a durable consumer on the
call_record subjects); the API pages, filters, exports and summarises them. The
primary key (run, endpoint, seq) makes a redelivered record a no-op. Deleting a run
deletes its rows (deletion.py finds every table with a run_id).

`summarise` and `series` are pure: the summary of a run's calls (attempts, answered,
failed, answer-seizure ratio) and its calls per second attempted / established /
failed and concurrent calls over time.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

import psycopg

from callmeter_events import CallRecorded
from callmeter_vocabulary import GOOD_OUTCOMES

TABLE = """
CREATE TABLE call_records (
    run_id text NOT NULL, endpoint_id text NOT NULL, seq integer NOT NULL,
    grp text NOT NULL, attempted_at timestamptz NOT NULL, outcome text NOT NULL,
    sip_code integer, reason text NOT NULL, codec text,
    time_to_trying_ms double precision, time_to_ringing_ms double precision,
    post_dial_delay_ms double precision, call_setup_ms double precision,
    answered_at timestamptz, duration_s double precision,
    send_mos double precision, send_loss_pct double precision,
    send_jitter_ms double precision, recv_mos double precision,
    recv_loss_pct double precision, recv_jitter_ms double precision,
    PRIMARY KEY (run_id, endpoint_id, seq)
);
CREATE INDEX call_records_by_time ON call_records (run_id, attempted_at)
"""

# Every column after the key and the group, in table order: a record's fields by name.
FIELDS = (
    "attempted_at",
    "outcome",
    "sip_code",
    "reason",
    "codec",
    "time_to_trying_ms",
    "time_to_ringing_ms",
    "post_dial_delay_ms",
    "call_setup_ms",
    "answered_at",
    "duration_s",
    "send_mos",
    "send_loss_pct",
    "send_jitter_ms",
    "recv_mos",
    "recv_loss_pct",
    "recv_jitter_ms",
)
COLUMNS = ("run_id", "endpoint_id", "seq", "grp", *FIELDS)
# The filters a listing takes (query parameter -> what it matches).
STATUSES = ("answered", "failed", "unanswered")


def create(conn: psycopg.Connection[Any]) -> None:
    conn.execute(TABLE)


def group_of(endpoint_id: str) -> str:
    """Endpoint ids are `<group>-<n>` (callmeter_events.endpoint_id)."""
    return endpoint_id.rsplit("-", 1)[0]


def write(conn: psycopg.Connection[Any], records: Sequence[CallRecorded]) -> None:
    """Store records (again: duplicates are ignored)."""
    if not records:
        return
    marks = ", ".join(["%s"] * len(COLUMNS))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO call_records ({', '.join(COLUMNS)}) VALUES ({marks})"
            " ON CONFLICT DO NOTHING",
            [
                (r.run_id, r.endpoint_id, r.seq, group_of(r.endpoint_id))
                + tuple(getattr(r, f) for f in FIELDS)
                for r in records
            ],
        )


@dataclass(frozen=True)
class CallFilter:
    """What a listing or an export keeps; None keeps everything."""

    status: str | None = None  # answered | failed (outcome not good) | unanswered
    outcome: str | None = None
    group: str | None = None
    endpoint_id: str | None = None
    sip_code: int | None = None

    def where(self, run_id: str) -> tuple[str, list[Any]]:
        clauses, args = ["run_id = %s"], list[Any]([run_id])
        if self.status == "answered":
            clauses.append("answered_at IS NOT NULL")
        elif self.status == "unanswered":
            clauses.append("answered_at IS NULL")
        elif self.status == "failed":
            clauses.append("NOT (outcome = ANY(%s))")
            args.append(sorted(GOOD_OUTCOMES))
        for column, value in (
            ("outcome", self.outcome),
            ("grp", self.group),
            ("endpoint_id", self.endpoint_id),
            ("sip_code", self.sip_code),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                args.append(value)
        return " AND ".join(clauses), args


def page(
    conn: psycopg.Connection[Any], run_id: str, flt: CallFilter, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """(matching count, one page of records in attempt order)."""
    where, args = flt.where(run_id)
    total = conn.execute(f"SELECT count(*) FROM call_records WHERE {where}", args).fetchone()
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM call_records WHERE {where}"
        " ORDER BY attempted_at, endpoint_id, seq LIMIT %s OFFSET %s",
        [*args, limit, offset],
    ).fetchall()
    return (total[0] if total else 0), [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def iterate(
    conn: psycopg.Connection[Any], run_id: str, flt: CallFilter
) -> Iterable[tuple[Any, ...]]:
    """Every matching record as a row in COLUMNS order (for exports), attempt order."""
    where, args = flt.where(run_id)
    with conn.transaction(), conn.cursor(name="call_export") as cur:
        cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM call_records WHERE {where}"
            " ORDER BY attempted_at, endpoint_id, seq",
            args,
        )
        while rows := cur.fetchmany(5000):
            yield from rows


def csv_chunks(conn: psycopg.Connection[Any], run_id: str, flt: CallFilter) -> Iterator[bytes]:
    """The matching records as CSV with a header row (`grp` is named group_name)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["group_name" if c == "grp" else c for c in COLUMNS])
    for row in iterate(conn, run_id, flt):
        writer.writerow(
            ["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in row]
        )
        if out.tell() > 1 << 16:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def write_parquet(
    conn: psycopg.Connection[Any], run_id: str, flt: CallFilter, out: IO[bytes]
) -> int:
    """The matching records as Parquet (pyarrow, row groups of 20,000); returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ts, f64, text = pa.timestamp("us", tz="UTC"), pa.float64(), pa.string()
    types = {"seq": pa.int32(), "sip_code": pa.int32(), "attempted_at": ts, "answered_at": ts}
    types.update({c: text for c in ("run_id", "endpoint_id", "grp", "outcome", "reason", "codec")})
    schema = pa.schema(
        [pa.field("group_name" if c == "grp" else c, types.get(c, f64)) for c in COLUMNS]
    )
    total, batch = 0, []
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for row in iterate(conn, run_id, flt):
            batch.append(row)
            if len(batch) >= 20_000:
                writer.write_table(
                    pa.Table.from_arrays(list(zip(*batch, strict=True)), schema=schema)
                )
                total, batch = total + len(batch), []
        if batch or not total:
            columns: list[Any] = list(zip(*batch, strict=True)) if batch else [[]] * len(COLUMNS)
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            total += len(batch)
    return total


Span = tuple[datetime, datetime | None, float | None, str]  # attempted, answered, s, outcome


def spans(conn: psycopg.Connection[Any], run_id: str) -> list[Span]:
    return [
        (a, b, d, o)
        for a, b, d, o in conn.execute(
            "SELECT attempted_at, answered_at, duration_s, outcome FROM call_records"
            " WHERE run_id = %s ORDER BY attempted_at",
            (run_id,),
        ).fetchall()
    ]


def timings(
    conn: psycopg.Connection[Any], run_id: str, start: datetime, end: datetime
) -> list[tuple[str, float | None, float | None]]:
    """(outcome, post-dial delay ms, setup ms) of the calls attempted in [start, end)."""
    return [
        (o, p, c)
        for o, p, c in conn.execute(
            "SELECT outcome, post_dial_delay_ms, call_setup_ms FROM call_records"
            " WHERE run_id = %s AND attempted_at >= %s AND attempted_at < %s",
            (run_id, start, end),
        ).fetchall()
    ]


def summarise(calls: Sequence[Span]) -> dict[str, Any]:
    """Attempts, answered, failed (outcome not good) and the answer-seizure ratio."""
    attempts = len(calls)
    answered = sum(1 for c in calls if c[1] is not None)
    failed = sum(1 for c in calls if c[3] not in GOOD_OUTCOMES)
    return {
        "attempts": attempts,
        "answered": answered,
        "failed": failed,
        "asr": round(answered / attempts, 6) if attempts else None,
    }


def series(calls: Sequence[Span], max_points: int = 300) -> dict[str, Any]:
    """Per bin (1 s, wider for long runs so there are at most max_points): calls per
    second attempted (by attempt time), established (by answer time) and failed (by
    attempt time: the record has no end time of a failed attempt), and the calls in
    progress (answered, not ended) at the start of each bin."""
    if not calls:
        empty: list[Any] = []
        return dict(
            bin_s=1,
            start=None,
            t=empty,
            attempted=empty,
            established=empty,
            failed=empty,
            concurrent=empty,
        )
    start = min(c[0] for c in calls)
    ends = [c[1] + timedelta(seconds=c[2] or 0.0) if c[1] else c[0] for c in calls]
    span = (max(ends) - start).total_seconds()
    bin_s = max(1, math.ceil((span + 1) / max_points))
    n = int(span // bin_s) + 1

    def index(t: datetime) -> int:
        return min(n - 1, int((t - start).total_seconds() // bin_s))

    attempted, established, failed = [0] * n, [0] * n, [0] * n
    change = [0] * (n + 1)  # concurrency: +1 at answer, -1 at end
    for (at, answered, _, outcome), end in zip(calls, ends, strict=True):
        attempted[index(at)] += 1
        if outcome not in GOOD_OUTCOMES:
            failed[index(at)] += 1
        if answered is not None:
            established[index(answered)] += 1
            lo = math.ceil((answered - start).total_seconds() / bin_s)
            hi = math.ceil((end - start).total_seconds() / bin_s)
            if hi > lo:  # in progress at the start of bins lo .. hi-1
                change[min(lo, n)] += 1
                change[min(hi, n)] -= 1
    concurrent, level = [], 0
    for i in range(n):
        level += change[i]
        concurrent.append(level)
    return {
        "bin_s": bin_s,
        "start": start,
        "t": [i * bin_s for i in range(n)],
        "attempted": [v / bin_s for v in attempted],
        "established": [v / bin_s for v in established],
        "failed": [v / bin_s for v in failed],
        "concurrent": concurrent,
    }
