"""Pages for probes (list, one probe with its history chart) and the public,
read-only status page a project can opt in to (no login, nothing internal)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from callmeter_storage import probes as rows
from callmeter_storage import resources as resource_rows
from callmeter_storage import results

from . import probes
from .deps import PlatformDep
from .errors import ApiError
from .forms import CODECS
from .html_resources import _error, _input, _visible
from .html_tests import posted
from .pages import render
from .principal import CURRENT
from .probes import ADMIN, ProbeIn, ProjectWebhooksIn
from .resources import query
from .svg import Chart, Series, line_chart

router = APIRouter(include_in_schema=False)
public = APIRouter(include_in_schema=False)
HISTORY = 60  # executions on a probe's page and chart
STATUS_HISTORY = 30  # executions per probe on a status page
HEALTH_CSS = {"HEALTHY": "st-good", "DEGRADED": "st-warn", "UNHEALTHY": "st-bad", None: ""}


def history_charts(history: list[dict[str, Any]]) -> list[str]:
    """MOS, post-dial delay and success per execution, oldest left; x in minutes from
    now (negative: past), to a tenth (executions are at least 30 s apart)."""
    now = datetime.now(UTC)
    points = [
        (round(-(now - h["started_at"]).total_seconds() / 60, 1), h) for h in reversed(history)
    ]

    def chart(title: str, unit: str, key: str, **kw: Any) -> str:
        series = Series(title, [(x, h[key]) for x, h in points])
        return line_chart(Chart(title, unit, [series], x_unit="min", **kw))

    return [
        chart("MOS", "", "mos", marks=[("3.5", 3.5, "#d97706")], y_min=1, y_max=4.5),
        chart("Post-dial delay", "ms", "post_dial_delay_ms"),
        chart("Success", "%", "success_pct", y_min=0, y_max=100),
    ]


def conditions(fields: dict[str, str]) -> dict[str, list[str] | None]:
    """The two condition boxes, one condition a line; an empty box: the defaults for
    what the target does (probe_core.default_conditions)."""
    out: dict[str, list[str] | None] = {}
    for level in ("unhealthy", "degraded"):
        lines = [ln.strip() for ln in fields.get(level, "").splitlines() if ln.strip()]
        out[level] = lines or None
    return out


# The inline target's form fields, by the place in the definition they fill
INLINE_FIELDS = {
    "definition.duration_s": "call_s",
    "definition.groups.0.target_uri": "target_uri",
    "definition.groups.0.registrar_id": "registrar_id",
    "definition.groups.0.registrar": "registrar_id",
    "definition.groups.0.accounts": "username",
    "definition.groups.0.accounts.0.username": "username",
    "definition.groups.0.accounts.0.password": "password",
    "definition.groups.0.codecs": "codec",
    "definition.groups.0.codecs.0": "codec",
}


def inline_target(fields: dict[str, str]) -> dict[str, Any] | None:
    """The inline definition the form's own target gives: one endpoint that calls the
    target URI (registered first when a registrar is chosen), or only registers (a
    registrar and no URI). None: no target URI and no registrar given."""
    uri, registrar = fields.get("target_uri", "").strip(), fields.get("registrar_id", "")
    if not uri and not registrar:
        return None
    group: dict[str, Any] = {"name": "P", "endpoints": 1, "codecs": [fields.get("codec") or "PCMU"]}
    if uri:
        group["target_uri"] = uri
    if registrar:
        group["registrar_id"] = registrar
    if user := fields.get("username", "").strip():
        group["accounts"] = [{"username": user, "password": fields.get("password", "")}]
    name = fields.get("name", "").strip() or "probe"
    return {"name": name, "duration_s": fields.get("call_s", "").strip() or 10, "groups": [group]}


def form_errors(exc: ValidationError | ApiError) -> dict[str, str]:
    """Errors by form field: a condition's error ("thresholds.unhealthy.1: ...") goes
    beside its box, as "unhealthy: line 2: ..."; an inline target's beside its field."""
    out = {}
    for field, message in _error(exc).items():
        parts = field.split(".")
        if parts[0] == "thresholds" and len(parts) >= 2:
            line = f"line {int(parts[2]) + 1}: " if len(parts) > 2 and parts[2].isdigit() else ""
            field = parts[1]
            message = f"{field}: {line}{message.split(': ', 1)[-1]}"
        elif field in INLINE_FIELDS:
            field = INLINE_FIELDS[field]
            message = f"{field}: {message.split(': ', 1)[-1]}"
        out[field] = message
    return out


async def _tests(p: PlatformDep) -> list[dict[str, Any]]:
    found = await query(p, results.list_tests)
    return [t for t in found if CURRENT.get().sees(t["definition"]["project"])]


async def _list(p: PlatformDep, code: int = 200, form: Any = None, errors: Any = None) -> Any:
    found = _visible(await query(p, rows.list_probes))
    registrars = _visible(await query(p, resource_rows.list_registrars))
    projects = sorted({f["project"] for f in found})
    pages = {pr: await query(p, rows.status_slug, pr) for pr in projects}
    hooks = {pr: await query(p, rows.project_webhooks, pr) for pr in projects}
    return render(
        "probes.html",
        code,
        probes=found,
        tests=await _tests(p),
        registrars=registrars,
        codecs=CODECS,
        status_pages=pages,
        webhooks=hooks,
        may_admin={pr: CURRENT.get().may(ADMIN, pr) for pr in projects},
        css=HEALTH_CSS,
        form=form or {},
        errors=errors or {},
    )


@router.get("/probes", response_class=HTMLResponse)
async def probes_page(p: PlatformDep) -> Any:
    return await _list(p)


@router.post("/probes", response_class=HTMLResponse)
async def create_probe(request: Request, p: PlatformDep) -> Any:
    fields = await posted(request)
    given: dict[str, Any] = _input(fields, ("name", "project", "interval_s", "test_id", "confirm"))
    if (inline := inline_target(fields)) is not None:
        given["definition"] = inline  # with a test too: "give either ..." names test_id
    try:
        body = ProbeIn.model_validate(given | {"thresholds": conditions(fields)})
        probe_id = await probes.save(p, CURRENT.get(), body)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 422:
            raise
        return await _list(p, 422, fields, form_errors(exc))
    return RedirectResponse(f"/probes/{probe_id}", status_code=303)


@router.post("/probes/status-page")
async def status_page_toggle(request: Request, p: PlatformDep) -> RedirectResponse:
    fields = await posted(request)
    project = fields.get("project", "")
    await probes.set_status_page(p, CURRENT.get(), project, fields.get("public") == "1")
    return RedirectResponse("/probes", status_code=303)


async def _change_webhooks(p: PlatformDep, fields: dict[str, str], add: bool) -> None:
    """Add (url, secret) to the project's webhooks, or remove url; Admins only."""
    project, url = fields.get("project", ""), fields.get("url", "").strip()
    probes.project_scope(CURRENT.get(), project, ADMIN)
    kept = [
        {"url": h["url"], "secret_ref": h["secret_ref"]}
        for h in await query(p, rows.project_webhooks, project)
        if h["url"] != url
    ]
    if add:
        kept.append({"url": url, "secret": fields.get("secret") or None})
    await probes.set_webhooks(p, CURRENT.get(), project, ProjectWebhooksIn(webhooks=kept))


@router.post("/probes/webhooks", response_class=HTMLResponse)
async def add_webhook(request: Request, p: PlatformDep) -> Any:
    fields = await posted(request)
    try:
        await _change_webhooks(p, fields, add=True)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 422:
            raise
        errors = {"url": f"url: {next(iter(_error(exc).values()))}"}
        return await _list(p, 422, {"hook_" + k: v for k, v in fields.items()}, errors)
    return RedirectResponse("/probes", status_code=303)


@router.post("/probes/webhooks/delete")
async def delete_webhook(request: Request, p: PlatformDep) -> RedirectResponse:
    await _change_webhooks(p, await posted(request), add=False)
    return RedirectResponse("/probes", status_code=303)


async def _probe_page(
    p: PlatformDep, probe_id: str, code: int = 200, form: Any = None, errors: Any = None
) -> HTMLResponse:
    found = probes.view(await probes.probe(p, CURRENT.get(), probe_id))
    history = await query(p, rows.history, probe_id, HISTORY)
    tests = [t for t in await _tests(p) if t["definition"]["project"] == found["project"]]
    return render(
        "probe.html",
        code,
        probe=found,
        tests=tests,
        history=history,
        charts=history_charts(history),
        css=HEALTH_CSS,
        form=form or {},
        errors=errors or {},
    )


@router.get("/probes/{probe_id}", response_class=HTMLResponse)
async def probe_page(probe_id: str, p: PlatformDep) -> HTMLResponse:
    return await _probe_page(p, probe_id)


@router.post("/probes/{probe_id}/edit", response_class=HTMLResponse)
async def edit_probe(probe_id: str, request: Request, p: PlatformDep) -> Any:
    """Name, interval, confirmations, conditions and the target: another saved test of
    the project (an inline target stays unless a test is chosen); the project stays."""
    fields = await posted(request)
    found = await probes.probe(p, CURRENT.get(), probe_id)
    kept = {k: found[k] for k in ("project", "test_id", "definition", "enabled")}
    if fields.get("test_id"):  # "" keeps the target as it is
        kept |= {"test_id": fields["test_id"], "definition": None}
    try:
        body = ProbeIn.model_validate(
            kept
            | _input(fields, ("name", "interval_s", "confirm"))
            | {"thresholds": conditions(fields)}
        )
        await probes.save(p, CURRENT.get(), body, probe_id)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 422:
            raise
        return await _probe_page(p, probe_id, 422, fields, form_errors(exc))
    return RedirectResponse(f"/probes/{probe_id}", status_code=303)


@router.post("/probes/{probe_id}/enabled")
async def pause_or_resume(probe_id: str, request: Request, p: PlatformDep) -> RedirectResponse:
    fields = await posted(request)
    await probes.set_enabled(p, CURRENT.get(), probe_id, fields.get("enabled") == "1")
    return RedirectResponse(f"/probes/{probe_id}", status_code=303)


@router.post("/probes/{probe_id}/delete")
async def delete_probe(probe_id: str, p: PlatformDep) -> RedirectResponse:
    await probes.delete(p, CURRENT.get(), probe_id)
    return RedirectResponse("/probes", status_code=303)


def public_view(found: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """What a status page may show of a probe: its name, health and recent health.
    Never its target, definition, conditions' reasons, run ids or anything else."""
    return {
        "name": found["name"],
        "health": found["health"],
        "since": found["since"],
        "recent": [
            {"at": h["started_at"], "health": h["health"], "mos": h["mos"]}
            for h in reversed(history)
            if h["judged_at"] is not None
        ],
    }


@public.get("/status/{slug}", response_class=HTMLResponse)
async def status_page(slug: str, p: PlatformDep) -> HTMLResponse:
    project = await query(p, rows.project_of_slug, slug)
    if project is None:
        return render("status.html", 404, project=None, probes=[], css=HEALTH_CSS)
    shown = []
    for found in await query(p, rows.list_probes):
        if found["project"] == project and found["enabled"]:
            history = await query(p, rows.history, found["id"], STATUS_HISTORY)
            shown.append(public_view(found, history))
    return render("status.html", project=project, probes=shown, css=HEALTH_CSS)
