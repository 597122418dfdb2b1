"""A run's quality per direction, its headline, and the threshold values. Pure: no I/O.

A stream is measured where it is received: a "recv" sample is the endpoint's
own count of what reached it (the catalogue's receive side, exact), while a
"send" sample only repeats what the peer said in RTCP. Each endpoint takes
part in one call, as caller or as receiver, so a group's received streams
all flow one way, and a run has two directions, named as the calling side
sees them (the catalogue's words):

- send: what callers send, caller -> callee, measured by the receiving
  groups' recv samples;
- recv: what callers receive, callee -> caller, measured by the calling
  groups' recv samples.

A caller whose peer is outside the test (target_uri) has no receiving group
here, so its send direction is not measured by the rollups (null); its
endpoint page shows the send samples (the peer's RTCP view).

The headline of each figure is the worse direction's, never an average across
directions: with 5 % loss from A to B and none back, loss is 5 %, not 2.5 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callmeter_vocabulary import GOOD_OUTCOMES, Outcome, Phase
from callmeter_vocabulary.metrics import DIRECTIONS

from .rollup import COUNTED_ONLY, ROLLUP_METRICS, percentiles

SEND, RECV = DIRECTIONS
# Quality metrics where a higher value is better; for the others lower is better.
HIGHER_IS_BETTER = frozenset({"mos"})
QUALITY_FIELDS = ("avg", "min", "max", "p5", "p50", "p95", "p99")
# MOS also gets p5: "95 % of seconds were at least this".
QUANTILES: dict[str, tuple[float, ...]] = {
    m: ((0.05,) if m in HIGHER_IS_BETTER else ()) + (0.5, 0.95, 0.99) for m in ROLLUP_METRICS
}

Stats = dict[str, float | int | None]


def receive_direction(definition: Mapping[str, Any] | None, group: str) -> str | None:
    """The run direction a group's received streams belong to: RECV for a calling group,
    SEND for a called group, None for a group that neither calls nor is called (or an
    unknown definition)."""
    if not definition:
        return None
    groups = definition.get("groups", [])
    for g in groups:
        if g.get("name") == group:
            if g.get("calls") or g.get("target_uri"):
                return RECV
            called = any(other.get("calls") == group for other in groups)
            return SEND if called else None
    return None


@dataclass(slots=True)
class Acc:
    """n, sum, min, max and bin counts of one metric, summed over several keys."""

    n: int = 0
    total: float = 0.0
    lo: float | None = None
    hi: float | None = None
    bins: dict[int, int] = field(default_factory=dict)

    def add(self, n: int, total: float | None, lo: float | None, hi: float | None) -> None:
        self.n += n
        self.total += total or 0.0
        if lo is not None:
            self.lo = lo if self.lo is None else min(self.lo, lo)
        if hi is not None:
            self.hi = hi if self.hi is None else max(self.hi, hi)

    def merge(self, other: Acc) -> None:
        self.add(other.n, other.total, other.lo, other.hi)
        bins = self.bins
        for index, n in other.bins.items():
            bins[index] = bins.get(index, 0) + n

    def stats(self, metric: str) -> Stats:
        out: Stats = {
            "n": self.n,
            "sum": self.total,
            "avg": self.total / self.n if self.n else None,
            "min": self.lo,
            "max": self.hi,
        }
        if metric in QUANTILES:
            out.update(percentiles(metric, self.bins, QUANTILES[metric], self.lo, self.hi))
        return out


Rows = Iterable[tuple[str, str, int, float | None, float | None, float | None]]
HistRows = Iterable[tuple[str, str, int, int]]


def accumulate(rows: Rows, hist: HistRows) -> dict[str, dict[str, Acc]]:
    """{key: {metric: Acc}} from (key, metric, n, sum, min, max) rows and (key, metric,
    bin, count) rows, e.g. per group or per endpoint (the rollups' own keys)."""
    out: dict[str, dict[str, Acc]] = {}
    for key, metric, n, total, lo, hi in rows:
        _acc(out, key, metric).add(int(n), total, lo, hi)
    for key, metric, index, n in hist:
        bins = _acc(out, key, metric).bins
        bins[int(index)] = bins.get(int(index), 0) + int(n)
    return out


def _acc(out: dict[str, dict[str, Acc]], key: str, metric: str) -> Acc:
    """The accumulator of `key`'s `metric`, made on first use."""
    per = out.get(key)
    if per is None:
        per = out[key] = {}
    acc = per.get(metric)
    if acc is None:
        acc = per[metric] = Acc()
    return acc


def combine(
    accs: Mapping[str, Mapping[str, Acc]], key_of: Mapping[str, str | None]
) -> dict[str, dict[str, Acc]]:
    """The accumulators of several keys summed under new keys (key_of; None: left out),
    e.g. groups into the directions of the run."""
    out: dict[str, dict[str, Acc]] = {}
    for key, per in accs.items():
        into = key_of.get(key)
        if into is None:
            continue
        target = out.setdefault(into, {})
        for metric, acc in per.items():
            if metric not in target:
                target[metric] = Acc()
            target[metric].merge(acc)
    return out


def figures(accs: Mapping[str, Acc]) -> dict[str, Stats]:
    """{metric: stats} of one direction (or one key), with "loss": the packets lost over
    those expected (lost + received), pooled over every sample, as a fraction."""
    out = {m: acc.stats(m) for m, acc in accs.items()}
    lost = accs["packets_lost"].total if "packets_lost" in accs else 0.0
    received = accs["packets"].total if "packets" in accs else 0.0
    expected = lost + received
    out["loss"] = {
        "lost": lost,
        "expected": expected,
        "fraction": lost / expected if expected else None,
    }
    return out


def _worse(metric: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if metric in HIGHER_IS_BETTER else max(present)


def headline(directions: Mapping[str, Mapping[str, Stats]]) -> dict[str, Stats]:
    """Each quality figure (and the loss fraction) from the worse direction; counts
    (samples, packets, lost packets, packet rate) are summed over the directions."""
    out: dict[str, Stats] = {}
    per = list(directions.values())
    for metric in ROLLUP_METRICS:
        of = [d[metric] for d in per if metric in d]
        if not of:
            continue
        entry: Stats = {"n": sum(int(s.get("n") or 0) for s in of)}
        for f in QUALITY_FIELDS:
            if any(f in s for s in of):
                entry[f] = _worse(metric, [s.get(f) for s in of])
        out[metric] = entry
    for metric in COUNTED_ONLY:
        acc = Acc()
        for d in per:
            if metric in d:
                s = d[metric]
                acc.add(int(s.get("n") or 0), s.get("sum"), s.get("min"), s.get("max"))
        if acc.n:
            out[metric] = acc.stats(metric)
    losses = [d["loss"] for d in per if "loss" in d]
    out["loss"] = {
        "lost": sum(x.get("lost") or 0 for x in losses),
        "expected": sum(x.get("expected") or 0 for x in losses),
        "fraction": _worse("loss", [x.get("fraction") for x in losses]),
    }
    return out


def speech_figures(scores: Iterable[float | None]) -> dict[str, Any]:
    """PESQ MOS-LQO over a run's scored calls: how many, their average, lowest and highest.
    A sampled call that was not scored (None) is left out; with none scored, every figure
    is null (never 0: a call nobody scored says nothing about quality)."""
    scored = [float(s) for s in scores if s is not None]
    return {
        "scored": len(scored),
        "avg": sum(scored) / len(scored) if scored else None,
        "min": min(scored, default=None),
        "max": max(scored, default=None),
    }


def summary(figs: Mapping[str, Stats]) -> dict[str, Any]:
    """The overview a run page and the API show, from one direction's figures or the headline."""

    def get(metric: str, f: str) -> Any:
        return figs.get(metric, {}).get(f)

    return {
        "samples": get("samples", "n") or 0,
        "mos": get("mos", "avg"),
        "mos_min": get("mos", "min"),
        "mos_p5": get("mos", "p5"),
        "jitter_ms": get("jitter_ms", "avg"),
        "fraction_lost": get("loss", "fraction"),
        "rtt_ms": get("rtt_ms", "avg"),
        "packets_recv_rate_ps": get("packet_rate_ps", "avg"),
        "packets_lost": get("packets_lost", "sum"),
        "packets_received": get("packets", "sum"),
    }


# Threshold metric -> (rollup metric, field, scale); see callmeter_events.thresholds.METRICS.
THRESHOLD_FIGURES: dict[str, tuple[str, str, float]] = {
    "mos_avg": ("mos", "avg", 1.0),
    "mos_min": ("mos", "min", 1.0),
    "mos_p5": ("mos", "p5", 1.0),
    "mos_p50": ("mos", "p50", 1.0),
    "jitter_avg_ms": ("jitter_ms", "avg", 1.0),
    "jitter_p95_ms": ("jitter_ms", "p95", 1.0),
    "loss_avg_pct": ("loss", "fraction", 100.0),
    "rtt_avg_ms": ("rtt_ms", "avg", 1.0),
    "rtt_p95_ms": ("rtt_ms", "p95", 1.0),
}


# Threshold metric -> field of speech_figures; see callmeter_events.thresholds.SPEECH_METRICS.
SPEECH_THRESHOLD_FIGURES = {"mos_lqo_avg": "avg", "mos_lqo_min": "min"}


def threshold_values(
    worst: Mapping[str, Stats],
    directions: Mapping[str, Mapping[str, Stats]],
    speech: Mapping[str, Any] | None = None,
) -> dict[str, float | None]:
    """The quality values thresholds are judged on: each name for the worse direction,
    and `<name>_send` / `<name>_recv` for one direction; with `speech` (speech_figures),
    the MOS-LQO of the scored calls, null when none was scored."""

    def value(figs: Mapping[str, Stats], name: str) -> float | None:
        metric, f, scale = THRESHOLD_FIGURES[name]
        v = figs.get(metric, {}).get(f)
        return None if v is None else float(v) * scale

    out = {name: value(worst, name) for name in THRESHOLD_FIGURES}
    for direction in DIRECTIONS:
        figs = directions.get(direction, {})
        out.update({f"{name}_{direction}": value(figs, name) for name in THRESHOLD_FIGURES})
    if speech is not None:
        out.update({name: speech.get(f) for name, f in SPEECH_THRESHOLD_FIGURES.items()})
    return out


SeriesRows = Iterable[tuple[Any, str, str, int, float | None, float | None, float | None]]


def series(rows: SeriesRows, direction_of: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """Per time bucket, n/avg/min/max of each metric over every group ("all") and per
    direction, from (t, group, metric, n, sum, min, max) rows in time order."""
    points: dict[Any, dict[str, dict[str, Acc]]] = {}
    for t, group, metric, n, total, lo, hi in rows:
        point = points.setdefault(t, {})
        keys = ["all"] + ([d] if (d := direction_of.get(group)) else [])
        for key in keys:
            per = point.setdefault(key, {})
            if metric not in per:
                per[metric] = Acc()
            per[metric].add(int(n), total, lo, hi)
    return [
        {"t": t, **{key: {m: _point(acc) for m, acc in per.items()} for key, per in point.items()}}
        for t, point in points.items()
    ]


def _point(acc: Acc) -> Stats:
    return {"n": acc.n, "avg": acc.total / acc.n if acc.n else None, "min": acc.lo, "max": acc.hi}


def success_rates(
    endpoints: Iterable[tuple[str | None, str | None, str | None, int]],
) -> dict[str, Any]:
    """The success rates, in percent, of endpoints counted as (role, phase, outcome,
    how many): the one definition the results, the run pages and the thresholds use.

    call_success_rate: of the callers that finished, those whose outcome is good
    (SUCCESS or COMPLETED_WITH_WARNINGS). registration_success_rate: of the endpoints
    that tried to register (got past INITIALIZING, or finished), those that did not end
    REGISTRATION_FAILED; a direct-mode endpoint counts as registered once it is ready,
    since nothing can fail there. Null when there is nothing to count yet.
    """
    finished = callers = called = tried = registered = 0
    for role, phase, outcome, n in endpoints:
        finished += n if outcome is not None else 0
        if role == "caller" and outcome is not None:
            callers += n
            called += n if outcome in GOOD_OUTCOMES else 0
        if outcome is not None or (phase is not None and phase != Phase.INITIALIZING):
            tried += n
            registered += n if outcome != Outcome.REGISTRATION_FAILED else 0
    return {
        "endpoints_finished": finished,
        "callers_finished": callers,
        "call_success_rate": 100.0 * called / callers if callers else None,
        "registration_attempts": tried,
        "registration_success_rate": 100.0 * registered / tried if tried else None,
    }
