"""A MetricBatch payload (parsed JSON) -> table rows in WRITE_COLUMNS order. Pure.

Ingest's hot path: no model per sample. The cells are checked a whole batch
at a time (the set of value types per kind, the integer range) and only a
batch that fails that is checked record by record, to name each bad sample
and keep the others. A problem with the batch itself (its keys, its shape)
rejects the whole message; a problem with one record rejects that record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any

from callmeter_events.metric_events import FLOAT_KEYS, INT_KEYS, TEXT_KEYS, layout_problem
from callmeter_events.metrics_catalogue import CATALOGUE

from .rollup import group_of
from .samples import SampleRejected, check_cell

_INT4 = 2**31
_INT8_MAX = 2**63 - 1
_NONE = type(None)
_DEFAULT_LAYOUT = (FLOAT_KEYS, INT_KEYS, TEXT_KEYS)
_WRITE_KEYS = FLOAT_KEYS + INT_KEYS + TEXT_KEYS
_KIND = {m.key: m.kind for m in CATALOGUE}


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
    out, heads = BatchRows(), _Heads(run_id)
    sizes = tuple(len(keys) for keys in layout)
    good: list[tuple[int, tuple[Any, ...], list[Any]]] = []
    for index, record in enumerate(records):
        try:
            head = heads.of(record, sizes)
        except SampleRejected as exc:
            out.rejected.append((index, f"record {index}: {exc}"))
            continue
        good.append((index, head, record))
    reorder = _reorder(layout)
    if _cells_ok([r for _, _, r in good]) and reorder is None:
        out.rows = [(*head, *r[4], *r[5], *r[6]) for _, head, r in good]
        out.records = [index for index, _, _ in good]
        return out
    keys = tuple(chain.from_iterable(layout))
    for index, head, record in good:
        values = [*record[4], *record[5], *record[6]]
        try:
            cells = [check_cell(_KIND[k], k, v) for k, v in zip(keys, values, strict=True)]
        except SampleRejected as exc:
            out.rejected.append((index, f"{head[2]} {head[3]} seq {head[4]}: {exc}"))
            continue
        ordered = cells if reorder is None else [cells[i] if i >= 0 else None for i in reorder]
        out.rows.append((*head, *ordered))
        out.records.append(index)
    return out


class _Heads:
    """The first six cells of each row, with the parse of each time and group once per batch."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.times: dict[Any, datetime] = {}
        self.groups: dict[str, str] = {}

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
        group = self.groups.get(endpoint)
        if group is None:
            group = self.groups[endpoint] = group_of(endpoint)
        return (self._time(ts), self.run_id, endpoint, direction, seq, group)

    def _time(self, ts: Any) -> datetime:
        parsed = self.times.get(ts) if type(ts) is str else None
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(ts)
            except (TypeError, ValueError) as exc:
                raise SampleRejected(f"ts: not an ISO 8601 time: {ts!r}") from exc
            if parsed.tzinfo is None:
                raise SampleRejected("ts: a timezone is required")
            self.times[ts] = parsed
        return parsed


def _cells_ok(records: list[list[Any]]) -> bool:
    """Every value is exactly its column's type (floats may not be ints: they are
    converted on the slow path) and fits it. JSON from orjson is always finite."""
    floats = set(map(type, chain.from_iterable(r[4] for r in records)))
    ints = [v for v in chain.from_iterable(r[5] for r in records) if v is not None]
    texts = [v for v in chain.from_iterable(r[6] for r in records) if v is not None]
    return (
        floats <= {float, _NONE}
        and set(map(type, ints)) <= {int}
        and (not ints or (max(ints) <= _INT8_MAX and min(ints) >= -_INT8_MAX))
        and set(map(type, texts)) <= {str}
        and not any("\x00" in t for t in texts)
    )


def _reorder(layout: tuple[tuple[str, ...], ...]) -> list[int] | None:
    """Where each write column's value is in a record (-1: absent, null); None: as it is."""
    if layout == _DEFAULT_LAYOUT:
        return None
    position = {k: i for i, k in enumerate(chain.from_iterable(layout))}
    return [position.get(k, -1) for k in _WRITE_KEYS]
