"""Tabulate a worker's per-second health figures around the runs of bench/overload.py.

Reads the file `bench/overload.py --health-log FILE` wrote while every overload limit
was 0 (so every second is logged) and the sustain time so long that nothing flagged:

    CALLMETER_OVERLOAD_HOST_CPU=0 CALLMETER_OVERLOAD_LOOP_LAG_MS=0 \\
    CALLMETER_OVERLOAD_TX_DEFICIT=0 CALLMETER_OVERLOAD_LATE_HOSTS=-1 \\
    CALLMETER_OVERLOAD_SUSTAIN_S=100000 python bench/overload.py --health-log h.txt
    python bench/health_seconds.py h.txt

Prints each run's seconds from its first call up (figures as the worker measured
them) and, for each figure, the highest value the calm run reached and the first
second the overloaded run held it above that for 3 s in a row: the evidence a limit
is chosen from (above the calm maximum, below what the overload reaches early).
"""

from __future__ import annotations

import ast
import sys
from datetime import datetime
from pathlib import Path

FIGURES = ("host_cpu", "loop_lag_ms", "late_hosts", "tx_deficit", "tx_expected")


def parse(path: Path) -> tuple[dict[str, dict[str, float]], list[tuple[float, dict]]]:
    runs: dict[str, dict[str, float]] = {}
    seconds: list[tuple[float, dict]] = []
    for line in path.read_text().splitlines():
        if line.startswith("# run "):
            name, *fields = line[len("# run ") :].split()
            marks = dict(f.split("=", 1) for f in fields)
            runs[name] = {
                k: datetime.fromisoformat(v).timestamp()
                for k, v in marks.items()
                if k in ("started", "first_call", "load_on") and v != "-"
            }
        elif "health: " in line and "; {" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            seconds.append((stamp, ast.literal_eval(line[line.rindex("; {") + 2 :])))
    return runs, seconds


def window(seconds: list[tuple[float, dict]], start: float, end: float) -> list[tuple[float, dict]]:
    return [(t - start, f) for t, f in seconds if start <= t < end]


def first_sustained(
    rows: list[tuple[float, dict]], key: str, limit: float, n: int = 3
) -> float | None:
    streak = 0
    for t, f in rows:
        v = f.get(key)
        streak = streak + 1 if v is not None and v > limit else 0
        if streak >= n:
            return t
    return None


def main() -> None:
    runs, seconds = parse(Path(sys.argv[1]))
    ends = sorted(r.get("started", 0.0) for r in runs.values()) + [float("inf")]
    rows: dict[str, list[tuple[float, dict]]] = {}
    for name, r in runs.items():
        start = r.get("first_call") or r.get("started")
        if start is None:
            continue
        end = min(e for e in ends if e > r.get("started", 0.0))
        rows[name] = window(seconds, start, end)
        print(f"{name}: {len(rows[name])} seconds from the first call up")
        print("   +s  " + "  ".join(f"{k:>11s}" for k in FIGURES))
        for t, f in rows[name][:40]:
            cells = [f.get(k) for k in FIGURES]
            print(
                f"{t:5.1f}  "
                + "  ".join("          -" if c is None else f"{c:11.3f}" for c in cells)
            )
    calm, over = rows.get("third", []), rows.get("over", [])
    print("\nfigure         calm max   over: first s held above calm max for 3 s")
    for key in FIGURES[:4]:
        values = [f[key] for _, f in calm if f.get(key) is not None]
        top = max(values) if values else None
        at = first_sustained(over, key, top) if top is not None else None
        print(
            f"{key:12s} {top if top is not None else '-':>10}   {at if at is not None else 'never'}"
        )


if __name__ == "__main__":
    main()
