"""Server-rendered SVG: line charts and the group topology diagram. Pure, no I/O.

SVG is drawn on the server so the pages need no chart library and read the
same without JavaScript; the output is plain markup the templates embed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

PALETTE = ("#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2")
Point = tuple[float, float | None]


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[Point]  # (x, y); y None leaves a gap
    color: str = ""


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str = ""
    series: Sequence[Series] = ()
    # Horizontal reference lines users judge by, e.g. MOS 3.5 (label, y, css colour).
    marks: Sequence[tuple[str, float, str]] = field(default_factory=tuple)
    y_min: float | None = None
    y_max: float | None = None
    x_unit: str = "s"  # what the x axis counts (seconds unless said)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 steps) so axes read cleanly."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 10))
    return ticks


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.3g}"


def _paths(points: Sequence[Point], sx: Any, sy: Any) -> list[str]:
    """One polyline per run of non-null points: a missing second is a gap, not a zero."""
    runs: list[list[str]] = [[]]
    for x, y in points:
        if y is None or (isinstance(y, float) and math.isnan(y)):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
    return [" ".join(r) for r in runs if r]


def line_chart(chart: Chart, width: int = 520, height: int = 180) -> str:
    """A labelled line chart; an empty chart says so instead of drawing axes."""
    left, right, top, bottom = 44, 10, 22, 24
    title = escape(chart.title + (f" ({chart.unit})" if chart.unit else ""))
    head = (
        f'<svg class="chart" role="img" aria-label="{title}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="4" y="14" font-size="12" font-weight="600">{title}</text>'
    )
    xs = [x for s in chart.series for x, y in s.points if y is not None]
    ys = [y for s in chart.series for _, y in s.points if y is not None]
    if not ys:
        return head + (
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12" '
            'fill="#6b7480">no samples yet</text></svg>'
        )
    marks = [m[1] for m in chart.marks]
    lo = chart.y_min if chart.y_min is not None else min(ys + marks)
    hi = chart.y_max if chart.y_max is not None else max(ys + marks)
    ticks = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - lo) / (hi - lo) * plot_h

    out = [head]
    for t in ticks:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
            f'stroke="#e3e6ea"/><text x="{left - 4}" y="{sy(t) + 4:.1f}" font-size="10" '
            f'text-anchor="end" fill="#6b7480">{_fmt(t)}</text>'
        )
    for label, y, color in chart.marks:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            f'stroke="{color}" stroke-dasharray="4 3"><title>{escape(label)}</title></line>'
        )
    out.append(
        f'<text x="{left}" y="{height - 6}" font-size="10" fill="#6b7480">'
        f"{_fmt(x0)} {escape(chart.x_unit)}</text>"
        f'<text x="{width - right}" y="{height - 6}" font-size="10" text-anchor="end" '
        f'fill="#6b7480">{_fmt(x1)} {escape(chart.x_unit)}</text>'
    )
    legend_x = width - right
    for i, s in enumerate(chart.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        for pts in _paths(s.points, sx, sy):
            if " " not in pts:  # a lone second draws as a dot; a one-point line is invisible
                cx, cy = pts.split(",")
                out.append(
                    f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}">'
                    f"<title>{escape(s.label)}</title></circle>"
                )
                continue
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{pts}">'
                f"<title>{escape(s.label)}</title></polyline>"
            )
        if len(chart.series) > 1:
            out.append(
                f'<text x="{legend_x}" y="14" font-size="11" text-anchor="end" '
                f'fill="{color}">{escape(s.label)}</text>'
            )
            legend_x -= 8 + 7 * len(s.label)
    out.append("</svg>")
    return "".join(out)


# --- group topology -------------------------------------------------------

CARD_W, CARD_H, GAP_X, GAP_Y = 190, 78, 90, 24


def topology_columns(groups: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Column per group: a caller left of the group it calls (cycles cut where met)."""
    calls = {g["name"]: g.get("calls") for g in groups}
    called = {c for c in calls.values() if c}
    col: dict[str, int] = {}

    def place(name: str, depth: int, seen: frozenset[str]) -> None:
        if name in seen or col.get(name, -1) >= depth:
            return
        col[name] = depth
        target = calls.get(name)
        if target and target in calls:
            place(target, depth + 1, seen | {name})

    for g in groups:
        if g["name"] not in called:
            place(g["name"], 0, frozenset())
    for g in groups:  # groups only reachable through a cycle
        if g["name"] not in col:
            place(g["name"], 0, frozenset())
    return col


def topology(definition: dict[str, Any]) -> str:
    """Group cards (endpoints, codecs, registrar, scenario) and caller → callee arrows."""
    groups = list(definition.get("groups", []))
    if not groups:
        return ""
    col = topology_columns(groups)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}  # cards on a whole-pixel grid
    for g in groups:
        c = col[g["name"]]
        r = rows.get(c, 0)
        rows[c] = r + 1
        pos[g["name"]] = (10 + c * (CARD_W + GAP_X), 10 + r * (CARD_H + GAP_Y))
    externals = [g for g in groups if g.get("target_uri")]
    n_cols = max(col.values()) + 1 + (1 if externals else 0)
    n_rows = max(max(rows.values()), len(externals))
    width = 20 + n_cols * CARD_W + (n_cols - 1) * GAP_X
    height = 20 + n_rows * (CARD_H + GAP_Y) + 20
    out = [
        f'<svg class="topology" role="img" aria-label="group topology" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrow" viewBox="0 0 10 10" '
        'refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#1d2733"/></marker></defs>'
    ]
    ext_x = 10 + (max(col.values()) + 1) * (CARD_W + GAP_X)
    for i, g in enumerate(externals):
        x, y = ext_x, 10 + i * (CARD_H + GAP_Y)
        out.append(_card(x, y, "external target", [g["target_uri"][:30]], dashed=True))
        pos["@" + g["name"]] = (x, y)
    for g in groups:
        target = g.get("calls") or ("@" + g["name"] if g.get("target_uri") else None)
        if target in pos:
            out.append(_arrow(pos[g["name"]], pos[target], label=f"{g['endpoints']} calls"))
    for g in groups:
        x, y = pos[g["name"]]
        lines = [
            f"{g['endpoints']} endpoint{'s' if g['endpoints'] != 1 else ''}",
            ", ".join(g.get("codecs") or ["PCMU"]),
            (g.get("registrar") or {}).get("host") or "direct (no registrar)",
        ]
        if g.get("scenario"):
            lines.append(f"scenario: {len(g['scenario'])} action(s)")
        out.append(_card(x, y, g["name"], lines))
    out.append("</svg>")
    return "".join(out)


def _card(x: float, y: float, title: str, lines: list[str], dashed: bool = False) -> str:
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    body = "".join(
        f'<text x="{x + 10}" y="{y + 36 + 14 * i}" font-size="11" fill="#374151">{escape(t)}</text>'
        for i, t in enumerate(lines)
    )
    return (
        f'<g class="group-card"><rect x="{x}" y="{y}" width="{CARD_W}" height="{CARD_H}" rx="6" '
        f'fill="#fff" stroke="#94a3b8"{dash}/><text x="{x + 10}" y="{y + 19}" font-size="13" '
        f'font-weight="600">{escape(title)}</text>{body}</g>'
    )


def _arrow(src: tuple[float, float], dst: tuple[float, float], label: str) -> str:
    (sx, sy), (dx, dy) = src, dst
    y1, y2 = sy + CARD_H / 2, dy + CARD_H / 2
    if dx > sx:  # forward: right edge to left edge
        x1, x2 = sx + CARD_W, dx
        path = f"M{x1},{y1} C{x1 + 40},{y1} {x2 - 40},{y2} {x2 - 2},{y2}"
    else:  # back edge (a cycle): loop under the cards
        x1, x2 = sx + CARD_W / 2, dx + CARD_W / 2
        low = max(sy, dy) + CARD_H + GAP_Y - 4
        path = f"M{x1},{sy + CARD_H} C{x1},{low} {x2},{low} {x2},{dy + CARD_H + 2}"
    mid_x, mid_y = (x1 + x2) / 2, (y1 + y2) / 2 - 6
    return (
        f'<path d="{path}" fill="none" stroke="#1d2733" stroke-width="1.5" '
        f'marker-end="url(#arrow)"/><text x="{mid_x}" y="{mid_y}" font-size="10" '
        f'text-anchor="middle" fill="#6b7480">{escape(label)}</text>'
    )


def bar_chart(
    title: str, bars: Sequence[tuple[str, float, str]], width: int = 520, height: int = 180
) -> str:
    """Counts (or rates) as bars (label, value, css colour); labels under the first,
    middle and last."""
    left, right, top, bottom = 44, 10, 22, 24
    head = (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="4" y="14" font-size="12" font-weight="600">{escape(title)}</text>'
    )
    if not any(n for _, n, _ in bars):
        return head + (
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12" '
            'fill="#6b7480">no samples</text></svg>'
        )
    ticks = nice_ticks(0, max(n for _, n, _ in bars))
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(bars)
    out = [head]
    for t in ticks:
        y = top + plot_h - t / ticks[-1] * plot_h
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#6b7480">{_fmt(t)}</text>'
        )
    for i, (label, n, color) in enumerate(bars):
        h = n / ticks[-1] * plot_h
        x = left + i * step
        out.append(
            f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{escape(label)}: {_fmt(n)}</title></rect>'
        )
        if i in (0, len(bars) // 2, len(bars) - 1):
            out.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 6}" font-size="10" '
                f'text-anchor="middle" fill="#6b7480">{escape(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def paired_bars(
    title: str,
    rows: Sequence[tuple[str, float | None, float | None]],
    legend: tuple[str, str],
    lo: float = 1.0,
    hi: float = 4.5,
    width: int = 520,
) -> str:
    """Two horizontal bars per row (label, first, second) on a lo..hi scale; None: no bar."""
    left, right, top, row_h = 90, 40, 36, 26
    height = top + row_h * len(rows) + 8
    plot_w = width - left - right
    colors = ("#2563eb", "#9ca3af")
    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="4" y="14" font-size="12" font-weight="600">{escape(title)}</text>'
    ]
    for i, (name, color) in enumerate(zip(legend, colors, strict=True)):
        x = left + i * 170
        out.append(
            f'<rect x="{x}" y="21" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="30" font-size="10" fill="#6b7480">{escape(name)}</text>'
        )
    for r, (label, *values) in enumerate(rows):
        y = top + r * row_h
        out.append(
            f'<text x="{left - 6}" y="{y + 15}" font-size="11" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for j, v in enumerate(values):
            if v is None:
                continue
            w = max(0.0, min(1.0, (v - lo) / (hi - lo))) * plot_w
            yy = y + 2 + j * 11
            out.append(
                f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="10" fill="{colors[j]}">'
                f"<title>{escape(legend[j])}: {v:.2f}</title></rect>"
                f'<text x="{left + w + 4:.1f}" y="{yy + 9}" font-size="10" fill="#6b7480">'
                f"{v:.2f}</text>"
            )
    out.append("</svg>")
    return "".join(out)
