"""Pure shaping of read-model rows into what the API returns and the pages show."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from callmeter_events import (
    OUTCOMES,
    PHASES,
    TERMINAL_STATUSES,
    CapacityStepJudged,
    TestDefinition,
)
from callmeter_projections import Outage
from callmeter_storage.quality import success_rates
from callmeter_vocabulary.metrics import DIRECTIONS

from .capacity import answer
from .endpoint_views import Counts, status_class, tally

# Thresholds from the product documents: (good below/above, bad beyond).
THRESHOLDS = {
    "mos": (3.5, 3.0, "higher"),
    "jitter_ms": (30.0, 50.0, "lower"),
    "loss_pct": (1.0, 3.0, "lower"),
    "rtt_ms": (150.0, 300.0, "lower"),
}


def grade(metric: str, value: float | None) -> str:
    """'good', 'warn' or 'bad' by the thresholds users judge by; '' when unknown."""
    if value is None or metric not in THRESHOLDS:
        return ""
    good, bad, better = THRESHOLDS[metric]
    if better == "higher":
        return "good" if value >= good else ("bad" if value < bad else "warn")
    return "good" if value <= good else ("bad" if value > bad else "warn")


def endpoint_view(doc: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "endpoint_id",
        "group",
        "role",
        "phase",
        "outcome",
        "reason",
        "sip_code",
        "worker_id",
        "contact_uri",
        "target_uri",
        "codec",
        "time_to_register_ms",
        "post_dial_delay_ms",
        "call_setup_ms",
        "call_duration_s",
        "late_events",
        "mos_lqo",
        "mos_lqo_mode",
        "mos_lqo_error",
    )
    view = {k: doc.get(k) for k in keys}
    view["id"] = doc["endpoint_id"]
    return view


def listing_items(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Endpoint documents read with their "mos" (queries.endpoint_listing) as list rows."""
    items = []
    for doc in docs:
        view = endpoint_view(doc)
        items.append({**view, "mos": doc["mos"], "css": status_class(view)})
    return items


def progress(run: dict[str, Any], now: datetime | None = None) -> float:
    """Elapsed share of the configured duration (0..1) while running; 1 when finished."""
    if run["status"] in TERMINAL_STATUSES:
        return 1.0
    if not run.get("started_at"):
        return 0.0
    started = datetime.fromisoformat(run["started_at"])
    d = run["definition"]
    total = d["duration_s"] + d.get("buildup_s", 0)
    elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
    return max(0.0, min(1.0, elapsed / total))


def outage_text(doc: dict[str, Any]) -> str:
    """A stored outage as the run page names it."""
    return Outage(
        doc["component"],
        datetime.fromisoformat(doc["started_at"]),
        datetime.fromisoformat(doc["ended_at"]),
    ).describe()


def counts_of(endpoints: list[dict[str, Any]]) -> Counts:
    """Endpoint documents counted the way queries.endpoint_counts counts them in SQL."""
    found = Counter((e["group"], e["role"], e.get("phase"), e.get("outcome")) for e in endpoints)
    return [(*key, n) for key, n in found.items()]


def overload_view(run: dict[str, Any]) -> dict[str, Any] | None:
    """The run's first GeneratorOverloaded (stored docs), or None: results after its
    time measured the load generator as much as the system under test."""
    overloads = sorted(run.get("overloads") or [], key=lambda o: o["occurred_at"])
    if not overloads:
        return None
    first = overloads[0]
    return {
        "at": first["occurred_at"],
        "worker_id": first["worker_id"],
        "reason": first["reason"],
        "figures": first["figures"],
        "workers": sorted({o["worker_id"] for o in overloads}),
    }


def capacity_view(run: dict[str, Any]) -> dict[str, Any] | None:
    """A capacity search's answer and step table (capacity.answer), or None."""
    if not run["definition"].get("capacity"):
        return None
    definition = TestDefinition.model_validate(run["definition"])
    steps = [CapacityStepJudged.model_validate(s) for s in run.get("capacity_steps") or []]
    return answer(definition, steps)


def run_view(
    run: dict[str, Any], endpoints: list[dict[str, Any]], summary: dict[str, Any]
) -> dict[str, Any]:
    """The run with every endpoint (the JSON API, compare, results, replay)."""
    view = run_header(run, counts_of(endpoints), summary)
    view["endpoints"] = [endpoint_view(e) for e in endpoints]
    return view


def run_header(run: dict[str, Any], counts: Counts, summary: dict[str, Any]) -> dict[str, Any]:
    """The run with its endpoints counted, not listed (a run page's top)."""
    phases, outcomes = tally(counts)
    return {
        "id": run["run_id"],
        "test_id": run["test_id"],
        "name": run["definition"]["name"],
        "status": run["status"],
        "reason": run.get("reason") or "",
        "stopped": run.get("stopped", False),
        "simulated": run.get("simulated", False),
        "created_at": run.get("created_at"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "history": run.get("history", []),
        "outages": [outage_text(o) for o in run.get("outages", [])],
        "evaluation": run.get("evaluation"),
        "generator_overloaded": overload_view(run),
        "capacity": capacity_view(run),
        "samples_stored": run.get("samples_stored"),  # set once ingest stored every sample
        "definition": run["definition"],
        "progress": progress(run),
        "endpoint_count": sum(c[-1] for c in counts),
        "phase_counts": {p: phases.get(p, 0) for p in PHASES},
        "outcome_counts": {o: outcomes[o] for o in OUTCOMES if outcomes.get(o)},
        "call_success_rate": success_rates(c[1:] for c in counts)["call_success_rate"],
        "summary": with_loss_pct(summary),
    }


def with_loss_pct(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with loss in percent beside the fraction, headline and each direction."""
    out = dict(summary)
    loss = summary.get("fraction_lost")
    out["loss_pct"] = None if loss is None else 100 * loss
    for direction in DIRECTIONS:
        if isinstance(summary.get(direction), dict):
            out[direction] = with_loss_pct(summary[direction])
    return out


# Headline figures (the worse direction), then MOS, jitter and loss per direction.
# MOS-LQO: PESQ of the scored calls (null where none was scored).
COMPARED = (
    "mos",
    "mos_lqo",
    "jitter_ms",
    "loss_pct",
    "rtt_ms",
    "call_setup_ms",
    "call_success_rate",
)
PER_DIRECTION = ("mos", "jitter_ms", "loss_pct")


def compare_view(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary figures per run and their change from the first run (the baseline)."""
    rows = []
    for run in runs:
        setups = [e["call_setup_ms"] for e in run["endpoints"] if e.get("call_setup_ms")]
        values = {**run["summary"], "call_success_rate": run["call_success_rate"]}
        values["call_setup_ms"] = sum(setups) / len(setups) if setups else None
        shown = {k: values.get(k) for k in COMPARED}
        for direction in DIRECTIONS:
            side = values.get(direction) or {}
            shown.update({f"{k}_{direction}": side.get(k) for k in PER_DIRECTION})
        rows.append({"run": run, "values": shown})
    base = rows[0]["values"] if rows else {}
    for row in rows:
        row["deltas"] = {
            k: None if v is None or base.get(k) is None else v - base[k]
            for k, v in row["values"].items()
        }
    return rows
