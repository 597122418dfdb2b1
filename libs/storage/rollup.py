"""Histogram bins and percentiles for the per-run rollups. Pure: no I/O.

Ingest folds every stored receive-side sample into small rollup tables (count,
sum, min, max per second and per endpoint, plus a count per histogram bin), so
the results pages never scan raw samples. Percentiles are read back from the
bins; their error is at most one bin width, which the bounds below keep below
what a user can tell apart (0.01 MOS, 0.1 ms of jitter under 10 ms, ...).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

# The four quality values users judge a run by (DESIGN.md), receive side.
ROLLUP_METRICS: tuple[str, ...] = ("mos", "jitter_ms", "fraction_lost", "rtt_ms")
# Counted (n, sum, min, max) but not binned: what the run overview adds up.
# "samples" is 1 per stored receive-side sample, so its n is the sample count.
COUNTED_ONLY: tuple[str, ...] = ("samples", "packets", "packets_lost", "packet_rate_ps")
PERCENTILES: tuple[float, ...] = (0.5, 0.95, 0.99)


def _steps(start: float, stop: float, step: float) -> list[float]:
    n = round((stop - start) / step)
    return [float(round(start + i * step, 6)) for i in range(n)]


def _log_linear_ms() -> list[float]:
    # Fine where good calls live, coarse in the tail: relative error stays ~1-10 %.
    return (
        _steps(0, 10, 0.1) + _steps(10, 100, 1) + _steps(100, 1000, 10) + _steps(1000, 10000, 100)
    )


# Lower bounds of each bin (bin i holds lower[i] <= v < lower[i+1]); values
# below the first bound fall in bin 0, above the last in the last bin.
BOUNDS: dict[str, tuple[float, ...]] = {
    "mos": tuple(_steps(1.0, 4.5, 0.01) + [4.5]),
    "jitter_ms": tuple(_log_linear_ms() + [10000.0]),
    "rtt_ms": tuple(_log_linear_ms() + [10000.0]),
    "fraction_lost": tuple(_steps(0, 0.05, 0.001) + _steps(0.05, 1, 0.01) + [1.0]),
}


def bin_of(metric: str, value: float) -> int:
    """Index of the bin holding value (the same rule as SQL width_bucket - 1, clamped)."""
    bounds = BOUNDS[metric]
    return max(0, bisect.bisect_right(bounds, value) - 1)


def bin_value(metric: str, index: int) -> float:
    """The value a bin stands for: its midpoint (the last bin: its lower bound)."""
    bounds = BOUNDS[metric]
    if index + 1 >= len(bounds):
        return bounds[-1]
    return (bounds[index] + bounds[index + 1]) / 2


def percentiles(
    metric: str,
    counts: Mapping[int, int],
    qs: Iterable[float] = PERCENTILES,
    lo: float | None = None,
    hi: float | None = None,
) -> dict[str, float | None]:
    """Nearest-rank percentiles from bin counts, e.g. {"p50": 4.405, "p95": ...}.

    The rank's value is interpolated inside its bin, whose edges are narrowed to
    the observed minimum `lo` and maximum `hi` when given: a percentile then
    always lies within [lo, hi], and is exact when every value is the same (a
    run without loss has p50 0, not the first bin's midpoint)."""
    total = sum(counts.values())
    ordered = sorted(counts.items())
    out: dict[str, float | None] = {}
    for q in qs:
        name = f"p{round(q * 100)}"
        if total == 0:
            out[name] = None
            continue
        rank, seen = max(1, -(-q * total // 1)), 0  # ceil(q * total), at least 1
        for index, n in ordered:
            if seen + n >= rank:
                a, b = bin_edges(metric, index, lo, hi)
                value = a + (b - a) * (rank - seen - 0.5) / n
                out[name] = _clamp(value, lo, hi)
                break
            seen += n
    return out


def bin_edges(
    metric: str, index: int, lo: float | None = None, hi: float | None = None
) -> tuple[float, float]:
    """The range a bin's values can lie in: its bounds, narrowed to [lo, hi] when given
    (the last bin, open above, ends at hi or at its own lower bound)."""
    bounds = BOUNDS[metric]
    a = bounds[index]
    b = bounds[index + 1] if index + 1 < len(bounds) else (a if hi is None else max(a, hi))
    if lo is not None:
        a = min(max(a, lo), b) if index else lo  # bin 0 also holds values below its bound
    if hi is not None:
        b = max(min(b, hi), a)
    return a, b


def _clamp(value: float, lo: float | None, hi: float | None) -> float:
    if lo is not None and value < lo:
        return lo
    return hi if hi is not None and value > hi else value


def group_of(endpoint_id: str) -> str:
    """The group of an endpoint: ids are `<group>-<n>` (callmeter_events.endpoint_id)."""
    head, sep, tail = endpoint_id.rpartition("-")
    return head if sep and tail.isdigit() else endpoint_id
