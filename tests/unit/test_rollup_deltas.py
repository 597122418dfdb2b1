"""rollup_deltas: what a write appends, in wide rows; pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callmeter_events import MetricSample
from callmeter_storage.rollup import bin_of
from callmeter_storage.rollup_deltas import (
    BINNED_METRICS,
    STAT_METRICS,
    Deltas,
    Rollup,
    deltas_of,
)
from callmeter_storage.samples import TIMING_KEYS, to_row, to_write_order

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def row(
    endpoint: str, direction: str, s: float, **metrics: float | int | None
) -> tuple[object, ...]:
    sample = MetricSample(
        run_id="r",
        endpoint_id=endpoint,
        direction=direction,
        seq=int(s),
        ts=T0 + timedelta(seconds=s),
        metrics=metrics,  # type: ignore[arg-type]
    )
    return to_write_order(to_row(sample))


def stats(d: dict[str, tuple[int, float | None, float | None, float | None]]) -> list[object]:
    out: list[object] = []
    for m in STAT_METRICS:
        out += d.get(m, (0, None, None, None))
    return out


def test_receive_samples_sum_per_second_and_endpoint_and_bin_jointly() -> None:
    rows = [
        row("A-1", "recv", 0.0, mos=4.0, jitter_ms=1.0, packets=50),
        row("A-1", "recv", 0.5, mos=4.4, jitter_ms=None, packets=48),  # same second
        row("A-1", "send", 1.0, mos=1.0, packets=7),  # send side: no rollup, newest for timings
        row("A-2", "recv", 1.0, mos=4.0, jitter_ms=1.0),
        row("B-1", "recv", 1.0),  # nothing binned: no histogram row
    ]
    d = deltas_of(rows)
    assert sorted(d.second, key=str) == sorted(
        [
            (
                "r",
                "A",
                T0,
                2,
                *stats(
                    {
                        "mos": (2, 8.4, 4.0, 4.4),
                        "jitter_ms": (1, 1.0, 1.0, 1.0),
                        "packets": (2, 98.0, 48.0, 50.0),
                    }
                ),
            ),
            (
                "r",
                "A",
                T0 + timedelta(seconds=1),
                1,
                *stats({"mos": (1, 4.0, 4.0, 4.0), "jitter_ms": (1, 1.0, 1.0, 1.0)}),
            ),
            ("r", "B", T0 + timedelta(seconds=1), 1, *stats({})),
        ],
        key=str,
    )
    assert (
        "r",
        "A-1",
        "A",
        2,
        *stats(
            {
                "mos": (2, 8.4, 4.0, 4.4),
                "jitter_ms": (1, 1.0, 1.0, 1.0),
                "packets": (2, 98.0, 48.0, 50.0),
            }
        ),
    ) in d.endpoint
    mos4, mos44, jit1 = bin_of("mos", 4.0), bin_of("mos", 4.4), bin_of("jitter_ms", 1.0)
    # One row per endpoint: per binned metric (mos, jitter, loss, rtt) its bins and
    # their counts; none for an endpoint with no binned value.
    assert BINNED_METRICS == ("mos", "jitter_ms", "fraction_lost", "rtt_ms")
    assert sorted(d.hist, key=str) == sorted(
        [
            ("r", "A-1", "A", [mos4, mos44], [1, 1], [jit1], [1], [], [], [], []),
            ("r", "A-2", "A", [mos4], [1], [jit1], [1], [], [], [], []),
        ],
        key=str,
    )
    same = deltas_of([row("A-1", "recv", s, mos=4.0) for s in range(3)]).hist
    assert same == [("r", "A-1", "A", [mos4], [3], [], [], [], [], [], [])]
    newest = {t[1]: t[3] for t in d.timings}
    assert newest == {
        "A-1": T0 + timedelta(seconds=1),
        "A-2": T0 + timedelta(seconds=1),
        "B-1": T0 + timedelta(seconds=1),
    }


def summed(d: Deltas) -> tuple[dict[object, list[object]], ...]:
    """Each delta table's rows added up per key (as the rollup views and the fold do)."""
    out: tuple[dict[object, list[object]], ...] = ({}, {}, {})
    for r in d.hist:  # unpivoted: (run, endpoint, group, metric, bin) -> n
        for i, metric in enumerate(BINNED_METRICS):
            for b, n in zip(r[3 + 2 * i], r[4 + 2 * i], strict=True):
                key = (*r[:3], metric, b)
                out[2][key] = [out[2].get(key, [0])[0] + n]
    for table, rows, width in ((0, d.second, 3), (1, d.endpoint, 3)):
        for r in rows:
            key, values = r[:width], list(r[width:])
            have = out[table].get(key)
            if have is None:
                out[table][key] = values
                continue
            have[0] += values[0]  # samples
            for i in range(1, len(values), 4):  # n, sum, lo, hi of each metric
                n, total, lo, hi = values[i : i + 4]
                if n:
                    seen = have[i] > 0
                    have[i] += n
                    have[i + 1] = have[i + 1] + total if seen else total
                    have[i + 2] = min(have[i + 2], lo) if seen else lo
                    have[i + 3] = max(have[i + 3], hi) if seen else hi
    return out


def test_deltas_of_rows_added_part_by_part_are_those_of_all_the_rows() -> None:
    """Ingest adds a write's rows to its Rollup as its messages are decoded: the deltas
    are those of all the rows, one row per key (not one per part), and the timings are
    the newest of all (at equal times the receive side, across parts too)."""
    rows = [
        row(f"A-{e}", d, s / 2, mos=3.0 + (e * s) % 15 / 10, jitter_ms=float(s), packets=e)
        for s in range(6)
        for e in range(3)
        for d in ("send", "recv")
    ]
    rows.append(row("A-0", "send", 2.5, mos=1.0))  # the send side at the newest time
    rows.insert(5, row("A-0", "recv", 2.5, mos=2.0, post_dial_delay_ms=99.0))
    rollup = Rollup()
    for i in range(0, len(rows), 7):
        rollup.add(rows[i : i + 7])
    whole = deltas_of(rows)
    together = rollup.deltas()
    assert summed(together) == summed(whole)
    assert together.timings == whole.timings
    assert sorted(together.endpoint) == sorted(whole.endpoint)  # one row per endpoint
    assert len(together.endpoint) == 3 and len(together.second) == len(summed(whole)[0])
    newest = {t[1]: t[3] for t in together.timings}
    assert newest["A-0"] == T0 + timedelta(seconds=2.5)
    (a0,) = [t[4:] for t in together.timings if t[1] == "A-0"]
    assert a0[TIMING_KEYS.index("post_dial_delay_ms")] == 99.0  # the receive side's
