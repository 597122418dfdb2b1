"""A MetricBatch payload (parsed JSON) -> table rows in WRITE_COLUMNS order. Pure.

Ingest's hot path: no model per sample. A batch is checked a whole column at a
time (the set of types in it, the ranges, each distinct endpoint and time once)
and only a batch that fails that is checked record by record, to name each bad
sample and keep the others; there, only a record whose values fail the same
checks has each value checked on its own (check_cell). A problem with the batch
itself (its keys, its shape) rejects the whole message; a problem with one
record rejects that record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from callmeter_events.metric_events import FLOAT_KEYS, INT_KEYS, TEXT_KEYS, layout_problem
from callmeter_events.metrics_catalogue import CATALOGUE

from .rollup import group_of
from .samples import SampleRejected, check_cell

_INT4 = 2**31
_INT8_MAX = 2**63 - 1
_NONE = type(None)
_DIRECTIONS = frozenset(("send", "recv"))
_DEFAULT_LAYOUT = (FLOAT_KEYS, INT_KEYS, TEXT_KEYS)
_WRITE_KEYS = FLOAT_KEYS + INT_KEYS + TEXT_KEYS
_KIND = {m.key: m.kind for m in CATALOGUE}
_group = lru_cache(maxsize=1 << 16)(group_of)  # endpoints recur in every batch of a run

Lists = Sequence[list[Any]]  # one kind's value lists, a record's each


@dataclass
class BatchRows:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    records: list[int] = field(default_factory=list)  # the record index of each row
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (record index, reason)


def batch_rows(payload: dict[str, Any]) -> BatchRows:
    """Rows of a current-version MetricBatch; raises SampleRejected if the batch is unusable."""
    run_id, records = payload.get("run_id"), payload.get("samples")
    if not isinstance(run_id, str) or "\x00" in run_id:
        raise SampleRejected("run_id: expected text")
    if not isinstance(records, list):
        raise SampleRejected("samples: expected a list of records")
    layout = tuple(
        payload.get(f"{kind}_keys", keys)
        for kind, keys in zip(("float", "int", "text"), _DEFAULT_LAYOUT, strict=True)
    )
    if not all(type(keys) in (list, tuple) for keys in layout) or not all(
        type(k) is str for k in chain.from_iterable(layout)
    ):
        raise SampleRejected("keys: expected lists of metric names")
    layout = tuple(tuple(keys) for keys in layout)
    problem = layout_problem(*layout)
    if problem:
        raise SampleRejected(problem)
    sizes = tuple(len(keys) for keys in layout)
    pick = _picker(layout)
    out = BatchRows()
    rows = _fast_rows(run_id, records, sizes, pick)
    if rows is not None:
        out.rows, out.records = rows, list(range(len(rows)))
        return out
    # Something in the batch is off: find which records, keep the others.
    heads = _Heads(run_id)
    good: list[tuple[int, tuple[Any, ...], list[Any]]] = []
    for index, record in enumerate(records):
        try:
            good.append((index, heads.of(record, sizes), record))
        except SampleRejected as exc:
            out.rejected.append((index, f"record {index}: {exc}"))
    kinds = [[r[k] for _, _, r in good] for k in (4, 5, 6)]
    all_ok = _cells_ok(*kinds)  # else each record on its own, and check_cell for the bad ones
    keys = tuple(chain.from_iterable(layout))
    for index, head, record in good:
        values = [*record[4], *record[5], *record[6]]
        if not all_ok and not _cells_ok((record[4],), (record[5],), (record[6],)):
            try:
                values = [check_cell(_KIND[k], k, v) for k, v in zip(keys, values, strict=True)]
            except SampleRejected as exc:
                out.rejected.append((index, f"{head[2]} {head[3]} seq {head[4]}: {exc}"))
                continue
        out.rows.append((*head, *(values if pick is None else pick(values))))
        out.records.append(index)
    return out


def _fast_rows(
    run_id: str, records: list[Any], sizes: tuple[int, ...], pick: Callable[[list[Any]], Any] | None
) -> list[tuple[Any, ...]] | None:
    """The rows if every record passes every check _Heads.of and check_cell make (or
    stricter ones), checked a column of the whole batch at a time; else None."""
    if not records:
        return []
    if set(map(type, records)) != {list} or set(map(len, records)) != {7}:
        return None
    endpoints, directions, seqs, stamps, floats, ints, texts = zip(*records, strict=True)
    if (
        set(map(type, endpoints + directions + stamps)) != {str}
        or not _DIRECTIONS.issuperset(directions)
        or set(map(type, seqs)) != {int}
        or not -_INT4 <= min(seqs) <= max(seqs) < _INT4
    ):
        return None
    for lists, size in zip((floats, ints, texts), sizes, strict=True):
        if set(map(type, lists)) != {list} or set(map(len, lists)) != {size}:
            return None
    if not _cells_ok(floats, ints, texts):
        return None
    distinct = set(endpoints)
    if "" in distinct or "\x00" in "".join(distinct):
        return None
    groups = {e: _group(e) for e in distinct}
    try:
        times = {ts: _time(ts) for ts in set(stamps)}
    except SampleRejected:
        return None
    if pick is None:
        return [
            (times[ts], run_id, e, d, seq, groups[e], *f, *i, *t)
            for e, d, seq, ts, f, i, t in records
        ]
    return [
        (times[ts], run_id, e, d, seq, groups[e], *pick([*f, *i, *t]))
        for e, d, seq, ts, f, i, t in records
    ]


class _Heads:
    """The first six cells of each row, checked one record at a time; each time parsed once."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.times: dict[Any, datetime] = {}

    def of(self, record: Any, sizes: tuple[int, ...]) -> tuple[Any, ...]:
        if type(record) is not list or len(record) != 7:
            raise SampleRejected("expected [endpoint_id, direction, seq, ts, floats, ints, texts]")
        endpoint, direction, seq, ts = record[0], record[1], record[2], record[3]
        if type(endpoint) is not str or not endpoint or "\x00" in endpoint:
            raise SampleRejected("endpoint_id: expected text")
        if direction not in ("send", "recv"):
            raise SampleRejected(f"direction: expected send or recv, got {direction!r}")
        if type(seq) is not int or not -_INT4 <= seq < _INT4:
            raise SampleRejected(f"seq: expected a 32-bit integer, got {seq!r}")
        for values, size in zip(record[4:], sizes, strict=True):
            if type(values) is not list or len(values) != size:
                raise SampleRejected(f"expected {size} values of each kind, as the keys say")
        parsed = self.times.get(ts) if type(ts) is str else None
        if parsed is None:
            parsed = self.times[ts] = _time(ts)
        return (parsed, self.run_id, endpoint, direction, seq, _group(endpoint))


def _time(ts: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(ts)
    except (TypeError, ValueError) as exc:
        raise SampleRejected(f"ts: not an ISO 8601 time: {ts!r}") from exc
    if parsed.tzinfo is None:
        raise SampleRejected("ts: a timezone is required")
    return parsed


def _cells_ok(floats: Lists, ints: Lists, texts: Lists) -> bool:
    """Every value is exactly its column's type or null, and fits it. Floats may not be
    ints (the slow path converts those); JSON from orjson is always finite."""
    if not {float, _NONE}.issuperset(map(type, chain.from_iterable(floats))):
        return False
    kinds = set(map(type, chain.from_iterable(ints)))
    if not kinds <= {int, _NONE}:
        return False
    if int in kinds:
        # hypot (the root of the sum of squares) is at least each |value|, so one cheap
        # pass proves them all in range (2**62: room for float rounding below 2**63 - 1);
        # only when it does not, min and max decide.
        numbers: Iterable[int] = chain.from_iterable(ints)
        if _NONE in kinds:
            numbers = filter(None, numbers)  # the nulls out (and zeros, which fit anyway)
        if not math.hypot(*numbers) < 2**62:
            known = [v for v in chain.from_iterable(ints) if v is not None]
            if not -_INT8_MAX <= min(known) <= max(known) <= _INT8_MAX:
                return False
    kinds = set(map(type, chain.from_iterable(texts)))
    return kinds <= {str, _NONE} and "\x00" not in "".join(filter(None, chain.from_iterable(texts)))


def _picker(layout: tuple[tuple[str, ...], ...]) -> Callable[[list[Any]], Any] | None:
    """From a record's values in layout order, those of each write column (a key the layout
    lacks: null); None when the layout is the write order already."""
    if layout == _DEFAULT_LAYOUT:
        return None
    position = {k: i for i, k in enumerate(chain.from_iterable(layout))}
    absent = len(position)  # the None appended after a record's values
    get = itemgetter(*(position.get(k, absent) for k in _WRITE_KEYS))
    return lambda values: get([*values, None])
