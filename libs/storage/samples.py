"""Samples -> metric_samples rows: a Sample's fields are the row's first cells. Pure.

The checks are the Sample contract's (callmeter_vocabulary.sample): a Sample
decoded by msgspec holds only values its columns take, so a row is its fields
plus the run and the endpoint's group, with nothing converted.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from callmeter_events import MetricSample
from callmeter_vocabulary.metrics import CATALOGUE, KEYS
from callmeter_vocabulary.sample import SampleHead, SampleRejected, check, row_cells

from .rollup import group_of

__all__ = ["SampleRejected"]

# The table's (and export's) column order.
HEAD: tuple[str, ...] = ("time", "run_id", "endpoint_id", "direction", "seq", "group_name")
COLUMNS: tuple[str, ...] = HEAD + KEYS
PG_TYPES: tuple[str, ...] = ("timestamptz", "text", "text", "text", "int4", "text") + tuple(
    {"float": "float8", "int": "int8", "text": "text"}[m.kind] for m in CATALOGUE
)
# The order ingest writes columns in: a Sample's fields (ts, endpoint_id, direction,
# seq, then the catalogue), then its run and group.
WRITE_COLUMNS: tuple[str, ...] = (
    ("time", "endpoint_id", "direction", "seq")
    + KEYS
    + (
        "run_id",
        "group_name",
    )
)
WRITE_TYPES: tuple[str, ...] = tuple(PG_TYPES[COLUMNS.index(c)] for c in WRITE_COLUMNS)
to_write_order = operator.itemgetter(*(COLUMNS.index(c) for c in WRITE_COLUMNS))
# Per-call timings (post-dial delay, setup time, ...): kept per endpoint in call_timings.
TIMING_KEYS: tuple[str, ...] = tuple(m.key for m in CATALOGUE if m.category == "timing")
TIME = WRITE_COLUMNS.index("time")

_group = lru_cache(maxsize=1 << 16)(group_of)  # endpoints recur in every batch of a run


def rows_of(run_id: str, samples: Iterable[SampleHead]) -> list[tuple[Any, ...]]:
    """The rows (WRITE_COLUMNS order) of decoded samples of one run."""
    return [(*row_cells(s), run_id, _group(s.endpoint_id)) for s in samples]


def sample_of(event: MetricSample) -> SampleHead:
    """A single MetricSample event (older workers, integrations) as a checked Sample;
    SampleRejected names the field."""
    get = event.metrics.get
    return check([event.ts, event.endpoint_id, event.direction, event.seq, *map(get, KEYS)])


def to_row(event: MetricSample) -> tuple[Any, ...]:
    """One row in COLUMNS order (the table's); raises SampleRejected for a value of the
    wrong type."""
    cells = rows_of(event.run_id, [sample_of(event)])[0]
    return tuple(cells[WRITE_COLUMNS.index(c)] for c in COLUMNS)
