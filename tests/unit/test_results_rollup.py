"""Rollup bins and percentiles: what the results pages read instead of raw samples."""

from __future__ import annotations

import math
import random

import pytest

from callmeter_storage.rollup import (
    BOUNDS,
    bin_edges,
    bin_of,
    bin_value,
    group_of,
    percentiles,
)


@pytest.mark.parametrize("metric", sorted(BOUNDS))
def test_bins_are_sorted_and_a_value_lands_in_the_bin_that_holds_it(metric: str) -> None:
    bounds = BOUNDS[metric]
    assert list(bounds) == sorted(set(bounds))
    for value in (bounds[0], bounds[3] + 1e-9, bounds[-2], bounds[-1] * 2):
        i = bin_of(metric, value)
        assert bounds[i] <= value and (i + 1 == len(bounds) or value < bounds[i + 1])
    # Below the first bound (a MOS under 1 cannot happen, a negative RTT neither): bin 0.
    assert bin_of(metric, -5) == 0


def test_percentiles_from_bins_are_within_one_bin_of_the_exact_ones() -> None:
    rnd = random.Random(7)
    values = [rnd.uniform(3.0, 4.45) for _ in range(5000)]
    counts: dict[int, int] = {}
    for v in values:
        counts[bin_of("mos", v)] = counts.get(bin_of("mos", v), 0) + 1
    got = percentiles("mos", counts)
    ordered = sorted(values)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert got[name] == pytest.approx(exact, abs=0.01), name


def test_percentiles_of_nothing_are_null_and_one_value_is_every_percentile() -> None:
    assert percentiles("rtt_ms", {}) == {"p50": None, "p95": None, "p99": None}
    one = percentiles("rtt_ms", {bin_of("rtt_ms", 42.0): 1})
    assert set(one.values()) == {bin_value("rtt_ms", bin_of("rtt_ms", 42.0))} == {42.5}


def test_the_group_is_the_endpoint_id_without_its_number() -> None:
    assert group_of("callers-12") == "callers"
    assert group_of("east-side-3") == "east-side"
    assert group_of("odd") == "odd"  # not <group>-<n>: the id stands for itself


def _counts(metric: str, values: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in values:
        counts[bin_of(metric, v)] = counts.get(bin_of(metric, v), 0) + 1
    return counts


def test_percentiles_lie_within_the_observed_min_and_max() -> None:
    # The two cases a run page showed: MOS p50 4.385 with a maximum of 4.383 (the bin's
    # midpoint), loss p50 0.0005 when every second had no loss.
    mos = [4.381, 4.382, 4.383, 4.383]
    got = percentiles("mos", _counts("mos", mos), lo=min(mos), hi=max(mos))
    assert all(4.381 <= v <= 4.383 for v in got.values() if v is not None), got
    assert percentiles("fraction_lost", _counts("fraction_lost", [0.0] * 50), lo=0.0, hi=0.0) == {
        "p50": 0.0,
        "p95": 0.0,
        "p99": 0.0,
    }


def test_one_repeated_value_is_every_percentile_exactly() -> None:
    for metric, value in (("mos", 4.3921), ("jitter_ms", 0.37), ("rtt_ms", 1234.5)):
        got = percentiles(metric, _counts(metric, [value] * 7), (0.05, 0.5, 0.99), value, value)
        assert set(got.values()) == {value}, metric


@pytest.mark.parametrize("metric", sorted(BOUNDS))
def test_random_values_give_percentiles_within_range_and_within_a_bin(metric: str) -> None:
    rnd = random.Random(metric)
    bounds = BOUNDS[metric]
    for size in (1, 2, 5, 40, 1000):
        # Clustered in a few bins (as real runs are), sometimes past the last bound.
        centre = rnd.choice(bounds[1:-1])
        values = [max(0.0, centre + rnd.gauss(0, 0.003)) for _ in range(size)]
        if rnd.random() < 0.3:
            values.append(bounds[-1] * 1.5)
        lo, hi = min(values), max(values)
        got = percentiles(metric, _counts(metric, values), (0.05, 0.5, 0.95, 0.99), lo, hi)
        ordered = sorted(values)
        for q in (0.05, 0.5, 0.95, 0.99):
            value = got[f"p{round(q * 100)}"]
            assert value is not None and lo <= value <= hi, (metric, size, q)
            exact = ordered[math.ceil(q * len(ordered)) - 1]
            i = bin_of(metric, exact)
            width = bounds[i + 1] - bounds[i] if i + 1 < len(bounds) else hi - bounds[i]
            assert abs(value - exact) <= width + 1e-9, (metric, size, q)


def test_bin_edges_narrow_to_what_was_seen() -> None:
    i = bin_of("mos", 4.383)
    assert bin_edges("mos", i) == pytest.approx((4.38, 4.39))
    assert bin_edges("mos", i, 4.381, 4.383) == pytest.approx((4.381, 4.383))
    # Bin 0 also holds values below its bound; the last bin is open above.
    assert bin_edges("rtt_ms", 0, -1.0, 0.05) == (-1.0, 0.05)
    last = len(BOUNDS["rtt_ms"]) - 1
    assert bin_edges("rtt_ms", last) == (10000.0, 10000.0)
    assert bin_edges("rtt_ms", last, 12000.0, 15000.0) == (12000.0, 15000.0)
