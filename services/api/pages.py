"""Jinja2 environment and rendering shared by the HTML routers.

A partial update renders a named block of the full-page template (the
jinja2-fragments idea), so a fragment can never drift from its page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from callmeter_events import OUTCOMES, PHASES
from callmeter_events.thresholds import verdict

from .capacity_chart import capacity_charts
from .endpoint_views import status_class
from .principal import CURRENT
from .views import grade

env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape()
)


def _number(value: object) -> bool:
    # Missing keys reach templates as jinja Undefined: show a dash, never fail the page.
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(value: float | None, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if _number(value) else "—"


def signed(value: float | None, digits: int = 2) -> str:
    return f"{value:+.{digits}f}" if _number(value) else "—"


def size(n: int | None) -> str:
    """Bytes as people read them: 512 B, 3.4 MB, 1.2 GB."""
    if not _number(n):
        return "—"
    value, unit = float(n), "B"  # type: ignore[arg-type]
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def grade_of(metric: str, value: float | None) -> str:
    return grade(metric, value) if _number(value) else ""


def svg(markup: str) -> Markup:
    """Markup built by svg.py, which escapes every text it puts in."""
    return Markup(markup)  # noqa: S704


env.globals.update(
    PHASES=PHASES,
    OUTCOMES=OUTCOMES,
    grade=grade_of,
    fmt=fmt,
    signed=signed,
    size=size,
    status_class=status_class,
    svg=svg,
    capacity_charts=capacity_charts,
    verdict=verdict,
)
env.filters["qs"] = lambda params: urlencode(params)
# Error keys under a prefix: the editor opens a collapsed section that has errors.
env.filters["under"] = lambda errors, prefix: [k for k in errors if k and k.startswith(prefix)]


def render_block(name: str, block: str, **ctx: Any) -> str:
    template = env.get_template(name)
    return "".join(template.blocks[block](template.new_context(ctx)))


def csrf_field() -> Markup:
    """The hidden input every state-changing form carries (services/api/auth.py)."""
    token = CURRENT.get().csrf
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token or "")


env.globals.update(csrf_field=csrf_field, current=CURRENT.get)


def render(name: str, code: int = 200, block: str | None = None, **ctx: Any) -> HTMLResponse:
    # `code`, not `status`: templates get `status` as a variable (error.html).
    if block is not None:
        return HTMLResponse(render_block(name, block, **ctx), status_code=code)
    return HTMLResponse(env.get_template(name).render(**ctx), status_code=code)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render("error.html", status, status=status, message=message)
