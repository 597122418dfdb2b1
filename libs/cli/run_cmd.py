"""`callmeter run TEST.yaml --wait`: for CI pipelines. Exit 1 when a threshold fails, or
for a capacity search, when its target number of concurrent calls was not sustained."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from callmeter_events import TERMINAL_STATUSES, RunStatus, TestDefinition
from callmeter_events.thresholds import verdict

from .client import Client


def load_definition(path: Path) -> dict[str, Any]:
    """Read and validate a test file (YAML or JSON) before anything is sent."""
    data = yaml.safe_load(path.read_text())
    return TestDefinition.model_validate(data).model_dump(mode="json")


def fmt(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def progress_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"{run['name']} · run {run['id']} · {run['status']}")
    phases = {k: v for k, v in run["phase_counts"].items() if v}
    for column in ["progress", *phases, "MOS", "samples"]:
        table.add_column(column)
    s = run["summary"]
    table.add_row(
        f"{100 * run['progress']:.0f}%",
        *map(str, phases.values()),
        fmt(s.get("mos")),
        str(s.get("samples") or 0),
    )
    return table


def summary_table(run: dict[str, Any]) -> Table:
    """Quality as the worse direction, then each direction (send: caller -> callee)."""
    table = Table(title=f"Run {run['id']}: {run['status']} {run.get('reason') or ''}")
    for column in ("metric", "value", "send", "recv"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    s = run["summary"]
    send, recv = s.get("send") or {}, s.get("recv") or {}
    for label, key in (
        ("MOS (avg)", "mos"),
        ("jitter ms", "jitter_ms"),
        ("loss %", "loss_pct"),
        ("RTT ms", "rtt_ms"),
    ):
        table.add_row(label, fmt(s.get(key)), fmt(send.get(key)), fmt(recv.get(key)))
    if s.get("mos_lqo_scored"):  # PESQ of the scored calls (measured where received)
        table.add_row(f"MOS-LQO ({s['mos_lqo_scored']} calls)", fmt(s.get("mos_lqo")), "", "")
    table.add_row("call success %", fmt(run.get("call_success_rate"), 1), "", "")
    for k, v in run["outcome_counts"].items():
        table.add_row(f"outcome {k}", str(v), "", "")
    return table


def thresholds_table(evaluation: dict[str, Any]) -> Table:
    table = Table(title="Thresholds: " + ("PASSED" if evaluation["passed"] else "FAILED"))
    for column in ("threshold", "actual", "result"):
        table.add_column(column)
    for r in evaluation["results"]:
        table.add_row(r["expression"], fmt(r["actual"], 3), verdict(r["actual"], r["passed"]))
    return table


def capacity_table(capacity: dict[str, Any]) -> Table:
    """A capacity search's steps: the load each had, its stop conditions, its verdict."""
    table = Table(title=f"Capacity: {capacity['text']}")
    in_cps = any(s.get("cps") is not None for s in capacity["steps"])
    for column in ("step", "calls/s" if in_cps else "calls", "conditions", "result"):
        table.add_column(column)
    for s in capacity["steps"]:
        conditions = ", ".join(f"{r['expression']}: {fmt(r['actual'], 3)}" for r in s["results"])
        result = "pass" if s["passed"] else "FAIL" + (f" ({s['reason']})" if s["reason"] else "")
        load = f"{s['cps']:g}" if in_cps else str(s["calls"])
        table.add_row(str(s["step"] + 1), load, conditions, result)
    return table


def capacity_exit(capacity: dict[str, Any], console: Console) -> int:
    """Print the answer; 1 when the target (or, without one, any step) was not met."""
    console.print(capacity_table(capacity))
    console.print(f"capacity: {capacity['text']}")
    if capacity["target_met"] is not None:
        met = bool(capacity["target_met"])
        verdict = "met" if met else "NOT met"
        if capacity.get("target_cps") is not None:
            console.print(f"target {capacity['target_cps']:g} calls/s: {verdict}")
        else:
            console.print(f"target {capacity['target_calls']} concurrent calls: {verdict}")
        return 0 if met else 1
    return 0 if capacity["calls"] else 1


def wait_for_run(client: Client, run_id: str, console: Console, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run = client.call("GET", f"/runs/{run_id}")
    with Live(progress_table(run), console=console, refresh_per_second=2) as live:
        while run["status"] not in TERMINAL_STATUSES or (
            run["status"] != RunStatus.CANNOT_RUN_FOR_NOW and run.get("evaluation") is None
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            run = client.call("GET", f"/runs/{run_id}")
            live.update(progress_table(run))
    return dict(run)


def run_test(path: Path, wait: bool, client: Client, console: Console, timeout: float) -> int:
    definition = load_definition(path)
    test_id = client.save_test(definition)
    run_id = client.call("POST", f"/tests/{test_id}/runs")["id"]
    console.print(f"test {test_id} run {run_id} started")
    if not wait:
        return 0
    run = wait_for_run(client, run_id, console, timeout)
    console.print(summary_table(run))
    evaluation = run.get("evaluation")
    if evaluation and evaluation["results"]:
        console.print(thresholds_table(evaluation))
    if run["status"] != RunStatus.COMPLETED:
        return 1
    if run.get("capacity"):
        # A capacity search stops itself at a failing step: its answer is the verdict,
        # not the thresholds over the whole run (which include that failing step).
        return capacity_exit(run["capacity"], console)
    if definition["thresholds"] and evaluation is None:
        console.print("[red]the thresholds were not evaluated in time[/red]")
        return 1
    return 0 if evaluation is None or evaluation["passed"] else 1
