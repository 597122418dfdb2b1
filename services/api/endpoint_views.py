"""Pure shaping for the endpoint list, group breakdown, pairing and SIP timeline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from callmeter_events import GOOD_OUTCOMES, OUTCOMES, PHASES, Phase

from .query_string import choice, number, text

SETUP_PHASES = frozenset({Phase.CALLING, Phase.RINGING, Phase.NEGOTIATING})
SORT_KEYS = ("endpoint", "group", "phase", "outcome", "sip_code", "mos", "setup")
PER_PAGE_MAX = 500


def status_class(ep: dict[str, Any]) -> str:
    """Colour users read at a glance: red failure, green in call, yellow setting up."""
    if ep.get("outcome") and ep["outcome"] not in GOOD_OUTCOMES:
        return "st-bad"
    if ep.get("phase") == Phase.INCALL or ep.get("outcome") in GOOD_OUTCOMES:
        return "st-good"
    if ep.get("phase") in SETUP_PHASES:
        return "st-warn"
    return ""


# Endpoints counted: (group, role, phase, outcome, n), as views.counts_of or
# queries.endpoint_counts make them.
Counts = list[tuple[str, str, str | None, str | None, int]]


def tally(counts: Counts) -> tuple[Counter[str], Counter[str]]:
    """Endpoints per phase and per outcome."""
    phases: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for _group, _role, phase, outcome, n in counts:
        if phase:
            phases[phase] += n
        if outcome:
            outcomes[outcome] += n
    return phases, outcomes


@dataclass(frozen=True)
class ListQuery:
    phase: str = ""
    outcome: str = ""  # an outcome, "failed" (any bad outcome) or "" (all)
    group: str = ""
    q: str = ""
    sort: str = "endpoint"
    order: str = "asc"
    page: int = 1
    per_page: int = 50

    @classmethod
    def parse(cls, params: dict[str, str]) -> ListQuery:
        """Unknown or malformed values fall back to defaults: a bad link still shows a list."""
        return cls(
            phase=choice(params, "phase", PHASES),
            outcome=choice(params, "outcome", (*OUTCOMES, "failed")),
            group=text(params, "group", 40),
            q=text(params, "q", 80).strip(),
            sort=choice(params, "sort", SORT_KEYS, "endpoint"),
            order=choice(params, "order", ("desc",), "asc"),
            page=number(params, "page", 1),
            per_page=number(params, "per_page", 50, PER_PAGE_MAX),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """Query parameters for a link to this list with some changes (non-defaults only)."""
        q = replace(self, **changes)
        default = ListQuery()
        return {
            k: str(getattr(q, k))
            for k in ("phase", "outcome", "group", "q", "sort", "order", "page", "per_page")
            if getattr(q, k) != getattr(default, k)
        }


def _ep_number(endpoint_id: str) -> int:
    tail = endpoint_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _natural(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["group"], _ep_number(e["id"]), e["id"])


def _value(sort: str, e: dict[str, Any], mos: dict[str, float]) -> Any:
    if sort == "phase":
        return PHASES.index(e["phase"]) if e.get("phase") in PHASES else None
    if sort == "outcome":
        return OUTCOMES.index(e["outcome"]) if e.get("outcome") in OUTCOMES else None
    if sort == "mos":
        return mos.get(e["id"])
    return {"group": e["group"], "sip_code": e.get("sip_code"), "setup": e.get("call_setup_ms")}[
        sort
    ]


def _sorted(rows: list[dict[str, Any]], sort: str, desc: bool, mos: dict[str, float]) -> list[Any]:
    """Rows with a value in the asked order, then rows without one in natural order."""
    if sort == "endpoint":
        return sorted(rows, key=_natural, reverse=desc)
    valued = [(v, e) for e in rows if (v := _value(sort, e, mos)) is not None]
    missing = [e for e in rows if _value(sort, e, mos) is None]
    valued.sort(key=lambda ve: _natural(ve[1]))  # ties keep natural order (stable sort)
    valued.sort(key=lambda ve: ve[0], reverse=desc)
    return [e for _, e in valued] + sorted(missing, key=_natural)


def select_endpoints(
    endpoints: list[dict[str, Any]], mos: dict[str, float], query: ListQuery
) -> list[dict[str, Any]]:
    """The endpoints matching the query's filters, in its order (all pages)."""
    rows = endpoints
    if query.phase:
        rows = [e for e in rows if e.get("phase") == query.phase]
    if query.outcome == "failed":
        rows = [e for e in rows if e.get("outcome") and e["outcome"] not in GOOD_OUTCOMES]
    elif query.outcome:
        rows = [e for e in rows if e.get("outcome") == query.outcome]
    if query.group:
        rows = [e for e in rows if e["group"] == query.group]
    if query.q:
        needle = query.q.lower()
        rows = [e for e in rows if needle in " ".join(str(v) for v in e.values()).lower()]
    return _sorted(rows, query.sort, query.order == "desc", mos)


def with_extras(e: dict[str, Any], mos: dict[str, float]) -> dict[str, Any]:
    return {**e, "mos": mos.get(e["id"]), "css": status_class(e)}


def endpoint_page(
    endpoints: list[dict[str, Any]], mos: dict[str, float], query: ListQuery
) -> dict[str, Any]:
    """Filter, sort and paginate endpoint views; rows carry their MOS and colour class."""
    rows = select_endpoints(endpoints, mos, query)
    total = len(rows)
    pages = max(1, -(-total // query.per_page))
    page = min(query.page, pages)
    start = (page - 1) * query.per_page
    items = [with_extras(e, mos) for e in rows[start : start + query.per_page]]
    return {"items": items, "total": total, "page": page, "pages": pages, "query": query}


def group_breakdown(
    definition: dict[str, Any],
    counts: Counts,
    group_mos: dict[str, float],
) -> list[dict[str, Any]]:
    """Per group: phase and outcome counts, failures, average MOS of its endpoints;
    from endpoint counts (views.counts_of, or queries.endpoint_counts in SQL)."""
    out = []
    for g in definition["groups"]:
        mine = [c for c in counts if c[0] == g["name"]]
        phases, outcomes = tally(mine)
        out.append(
            {
                "name": g["name"],
                "endpoints": sum(c[-1] for c in mine),
                "calls": g.get("calls") or g.get("target_uri") or "",
                "codecs": g.get("codecs") or [],
                "phases": {p: phases[p] for p in PHASES if phases.get(p)},
                "succeeded": sum(n for o, n in outcomes.items() if o in GOOD_OUTCOMES),
                "failed": sum(n for o, n in outcomes.items() if o not in GOOD_OUTCOMES),
                "mos": group_mos.get(g["name"]),
            }
        )
    return out


def group_means(endpoints: list[dict[str, Any]], mos: dict[str, float]) -> dict[str, float]:
    """Per group, the mean MOS of its endpoints that have one (queries.group_mos in SQL)."""
    values: dict[str, list[float]] = {}
    for e in endpoints:
        if mos.get(e["id"]) is not None:
            values.setdefault(e["group"], []).append(mos[e["id"]])
    return {g: sum(v) / len(v) for g, v in values.items()}


def paired_endpoints(definition: dict[str, Any], endpoint_id: str) -> list[str]:
    """Who this endpoint talks to: caller n of A calls receiver ((n-1) mod size)+1 of A's callee."""
    group_name, _, tail = endpoint_id.rpartition("-")
    if not tail.isdigit():
        return []
    n = int(tail)
    groups = {g["name"]: g for g in definition.get("groups", [])}
    me = groups.get(group_name)
    if me is None:
        return []
    callee = groups.get(me.get("calls") or "")
    if callee:
        return [f"{callee['name']}-{(n - 1) % callee['endpoints'] + 1}"]
    peers = []
    for g in definition["groups"]:
        if g.get("calls") == group_name:
            peers += [
                f"{g['name']}-{i}"
                for i in range(1, g["endpoints"] + 1)
                if (i - 1) % me["endpoints"] + 1 == n
            ]
    return peers


def describe_event(event: dict[str, Any]) -> str:
    """One line for a lifecycle event in the timeline."""
    kind = event.get("type", "")
    code = f" {event['sip_code']}" if event.get("sip_code") else ""
    reason = f" {event['reason']}" if event.get("reason") else ""
    return {
        "EndpointPhaseChanged": f"phase → {event.get('phase')}",
        "EndpointRegistered": f"registered as {event.get('contact_uri', '')}",
        "RegistrationFailed": f"registration failed{code}{reason}",
        "CallAttempted": f"calling {event.get('target_uri', '')}",
        "CallProgress": f"progress{code}{reason}",
        "CallEstablished": f"call established ({event.get('codec') or 'codec ?'})",
        "CallFailed": f"call failed{code}{reason}",
        "ScenarioActionExecuted": f"scenario {event.get('action')}: {event.get('detail', '')}",
        "DtmfReceived": f"DTMF {event.get('digits')} ({event.get('method')})",
        "SpeechQualityMeasured": (
            f"PESQ MOS-LQO {event['mos_lqo']:.2f} ({event.get('mode')})"
            if event.get("mos_lqo") is not None
            else f"PESQ not scored: {event.get('error')}"
        ),
        "CallEnded": f"call ended{code}{reason}",
        "EndpointFinished": f"finished {event.get('outcome')}{code}{reason}",
    }.get(kind, kind)


def _at(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def timeline(events: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lifecycle events and SIP messages in time order, with deltas in ms.

    `t_ms` counts from the first entry, `delta_ms` from the previous one, so
    signalling delays read straight off the page.
    """
    entries = [
        {"at": _at(e["occurred_at"]), "kind": "event", "label": describe_event(e), "text": ""}
        for e in events
    ] + [
        {
            "at": _at(m["ts"]),
            "kind": "sip",
            "direction": m.get("direction", ""),
            "label": (m.get("text") or "").split("\r\n", 1)[0].split("\n", 1)[0],
            "text": m.get("text") or "",
        }
        for m in messages
    ]
    entries.sort(key=lambda e: e["at"])
    first = prev = entries[0]["at"] if entries else None
    for e in entries:
        assert first is not None and prev is not None
        e["t_ms"] = (e["at"] - first).total_seconds() * 1000
        e["delta_ms"] = (e["at"] - prev).total_seconds() * 1000
        prev = e["at"]
    return entries
