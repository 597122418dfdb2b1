"""`callmeter probes`: what the commands print, and the exit code of `show`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

# `callmeter probes show` exits like a monitoring plugin: 0 OK, 1 warning, 2 critical,
# 3 unknown (never judged yet), so cron jobs and Nagios-style checks can use it.
EXIT_CODES = {"HEALTHY": 0, "DEGRADED": 1, "UNHEALTHY": 2, None: 3}


def probe_body(
    name: str,
    project: str | None,
    interval_s: float,
    test_id: str | None,
    target_file: Path | None,
    confirm: int,
    degraded: list[str] | None,
    unhealthy: list[str] | None,
) -> dict[str, Any]:
    """The POST /api/v1/probes body; the API validates it (errors name the field).
    The target file is sent as written: its passwords go to the secret store."""
    body: dict[str, Any] = {"name": name, "interval_s": interval_s, "confirm": confirm}
    if project:
        body["project"] = project
    if test_id:
        body["test_id"] = test_id
    if target_file is not None:
        body["definition"] = yaml.safe_load(target_file.read_text())
    thresholds = {
        k: v for k, v in (("degraded", degraded), ("unhealthy", unhealthy)) if v is not None
    }
    if thresholds:
        body["thresholds"] = thresholds
    return body


def probes_table(items: list[dict[str, Any]]) -> Table:
    table = Table("probe", "name", "project", "health", "since", "every", "target")
    for p in items:
        table.add_row(
            p["id"],
            p["name"],
            p["project"],
            p["health"] or "not judged yet",
            (p["since"] or "")[:19],
            f"{p['interval_s']:g} s",
            f"test {p['test_id']}" if p.get("test_id") else "inline",
        )
    return table


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def history_table(probe: dict[str, Any], items: list[dict[str, Any]]) -> Table:
    title = f"{probe['name']} · {probe['health'] or 'not judged yet'}"
    table = Table("started", "health", "MOS", "PDD ms", "success %", "why", "run", title=title)
    for h in items:
        health = h["health"] or ("running" if not h["judged_at"] else "not judged")
        table.add_row(
            h["started_at"][:19],
            health,
            _num(h["mos"], 2),
            _num(h["post_dial_delay_ms"], 0),
            _num(h["success_pct"], 0),
            h["reason"],
            h["run_id"],
        )
    return table
