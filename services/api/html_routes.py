"""Server-rendered pages (Jinja2 + HTMX). Partial updates render a named block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from callmeter_events import TestDefinition
from callmeter_storage import results

from . import service
from .deps import PlatformDep
from .errors import validation_field_and_message
from .views import grade

router = APIRouter(include_in_schema=False)
env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape()
)


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


env.globals.update(grade=grade, fmt=fmt)

DEMO = {
    "name": "smoke", "duration_s": 10,
    "groups": [
        {"name": "A", "endpoints": 4, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 4, "codecs": ["PCMU"]},
    ],
}  # fmt: skip


def render(name: str, status: int = 200, block: str | None = None, **ctx: Any) -> HTMLResponse:
    template = env.get_template(name)
    if block is None:
        return HTMLResponse(template.render(**ctx), status_code=status)
    html = "".join(template.blocks[block](template.new_context(ctx)))
    return HTMLResponse(html, status_code=status)


@router.get("/", response_class=HTMLResponse)
async def tests_page(p: PlatformDep, error: str = "", draft: str = "") -> HTMLResponse:
    tests = await service.query(p, results.list_tests)
    draft = draft or json.dumps(DEMO, indent=2)
    return render("tests.html", tests=tests, draft=draft, error=error)


async def form_field(request: Request, name: str) -> str:
    """One field of a urlencoded form (the pages post plain forms, no uploads)."""
    values = parse_qs((await request.body()).decode(), keep_blank_values=True).get(name, [""])
    return values[0]


@router.post("/tests", response_class=HTMLResponse)
async def create_test(request: Request, p: PlatformDep) -> Any:
    definition = await form_field(request, "definition")
    try:
        parsed = TestDefinition.model_validate_json(definition)
    except ValidationError as exc:
        _, message = validation_field_and_message(dict(exc.errors()[0]))
        tests = await service.query(p, results.list_tests)
        return render("tests.html", 422, tests=tests, draft=definition, error=message)
    test_id = await service.save_test(p, parsed)
    return RedirectResponse(f"/tests/{test_id}", status_code=303)


@router.get("/tests/{test_id}", response_class=HTMLResponse)
async def test_page(test_id: str, p: PlatformDep) -> HTMLResponse:
    test = await service.get_test(p, test_id)
    runs = await service.query(p, results.list_runs, test_id)
    return render("test.html", test=test, runs=runs)


@router.post("/tests/{test_id}/run")
async def run_test(test_id: str, p: PlatformDep) -> RedirectResponse:
    run_id = await service.start_run(p, test_id)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(run_id: str, p: PlatformDep) -> HTMLResponse:
    return render("run.html", run=await service.get_run(p, run_id))


@router.get("/runs/{run_id}/live", response_class=HTMLResponse)
async def run_live(run_id: str, p: PlatformDep) -> HTMLResponse:
    return render("run.html", block="live", run=await service.get_run(p, run_id))


@router.post("/runs/{run_id}/stop")
async def stop_run(run_id: str, p: PlatformDep) -> RedirectResponse:
    await service.stop_run(p, run_id)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.get("/workers", response_class=HTMLResponse)
async def workers_page(p: PlatformDep) -> HTMLResponse:
    workers = sorted(p.projector.workers.values(), key=lambda w: w.worker_id)
    return render("workers.html", workers=workers)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render("error.html", status, status=status, message=message)
