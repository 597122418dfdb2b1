"""Rollup bins and percentiles: what the results pages read instead of raw samples."""

from __future__ import annotations

import math
import random

import pytest

from callmeter_storage.rollup import BOUNDS, bin_of, bin_value, group_of, percentiles


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
