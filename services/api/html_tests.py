"""Test pages: list, editor (create, edit, duplicate), delete, run, runs history."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from callmeter_events import TestDefinition
from callmeter_storage import resources as resource_rows
from callmeter_storage import results

from . import forms, resources, service
from .auth import own_definition
from .authz import Principal, PrincipalDep, Role, require
from .deps import PlatformDep
from .errors import ApiError, validation_field_and_message
from .pages import render

router = APIRouter(include_in_schema=False)
Editor = Annotated[Principal, Depends(require(Role.EDITOR))]
Tester = Annotated[Principal, Depends(require(Role.TESTER))]

DEMO = {
    "name": "smoke",
    "duration_s": 10,
    "groups": [
        {"name": "A", "endpoints": 4, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 4, "codecs": ["PCMU"]},
    ],
}


async def posted(request: Request) -> dict[str, str]:
    """The pages post plain urlencoded forms (no uploads); first value per name."""
    parsed = parse_qs((await request.body()).decode(), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


async def choices(p: Any) -> dict[str, Any]:
    """The project resources the editor offers: saved registrars and account pools."""
    return {
        "registrars": await resources.query(p, resource_rows.list_registrars),
        "pools": await resources.query(p, resource_rows.list_pools),
    }


def editor(form: dict[str, Any], action: str, title: str, **ctx: Any) -> dict[str, Any]:
    names = [g.get("name", "") for g in form["groups"]]
    return {
        "registrars": [],
        "pools": [],
        "form": form,
        "action": action,
        "title": title,
        "group_names": names,
        "codecs": forms.CODECS,
        "transports": forms.TRANSPORTS,
        "errors": {},
        "option_choices": forms.OPTION_CHOICES,
        "actions": forms.ACTIONS,
        "dtmf_methods": forms.DTMF_METHODS,
        "pattern_kinds": forms.PATTERN_KINDS,
        "holds": forms.HOLDS,
        **ctx,
    }


def apply_op(form: dict[str, Any], op: str) -> bool:
    """Add/remove group buttons re-render the editor instead of saving (works without JS)."""
    if op == "add_group":
        form["groups"].append(forms.blank_group(len(form["groups"])))
        return True
    name, _, arg = op.partition(":")
    nums = [int(a) if a.isdigit() else -1 for a in arg.split(":")]
    if name == "remove_group":
        if 0 <= nums[0] < len(form["groups"]) and len(form["groups"]) > 1:
            form["groups"].pop(nums[0])
        return True
    if name in ("add_action", "remove_action"):  # the scenario builder's rows
        if not 0 <= nums[0] < len(form["groups"]):
            return True
        rows = form["groups"][nums[0]].setdefault("scenario", [])
        if name == "add_action" and len(rows) < forms.MAX_FORM_ROWS:
            rows.append(forms.blank_action())
        elif name == "remove_action" and len(nums) > 1 and 0 <= nums[1] < len(rows):
            rows.pop(nums[1])
        return True
    return False


async def save_from_form(  # type: ignore[no-untyped-def]
    request: Request,
    p: Any,
    who: Principal,
    action: str,
    title: str,
    test_id: str = "",
    stored: dict[str, Any] | None = None,
):
    fields = await posted(request)
    if fields.get("definition", "").strip():  # the advanced JSON editor
        try:
            definition = TestDefinition.model_validate_json(fields["definition"])
        except ValidationError as exc:
            field, message = validation_field_and_message(dict(exc.errors()[0]))
            form = forms.form_from_definition({"name": "", "groups": []})
            draft, dropped = forms.forget_json_secrets(fields["definition"])
            ctx = editor(form, action, title, json_draft=draft, **await choices(p))
            return render("test_form.html", 422, **ctx, json_error=message, secrets_dropped=dropped)
    else:
        form = forms.form_from_fields(fields)
        if not form["groups"]:
            form["groups"] = [forms.blank_group(0)]
        if apply_op(form, fields.get("op", "")):
            dropped = forms.forget_typed_secrets(form)
            ctx = editor(form, action, title, secrets_dropped=dropped, **await choices(p))
            return render("test_form.html", **ctx)
        parsed, errors = forms.validate(form, stored)
        if parsed is None:
            dropped = forms.forget_typed_secrets(form)
            ctx = editor(form, action, title, errors=errors, **await choices(p))
            return render("test_form.html", 422, **ctx, secrets_dropped=dropped)
        definition = parsed
    try:
        saved = await service.save_test(
            p, own_definition(who, definition, stored), test_id or None, who.actor
        )
    except ApiError as exc:  # a reference to a registrar or pool that is not there
        if exc.status != 422 or not exc.field:
            raise
        form = forms.form_from_definition(definition.model_dump())
        ctx = editor(form, action, title, errors={exc.field: exc.message}, **await choices(p))
        return render("test_form.html", 422, **ctx)
    return RedirectResponse(f"/tests/{saved}", status_code=303)


@router.get("/", response_class=HTMLResponse)
async def tests_page(p: PlatformDep, who: PrincipalDep) -> HTMLResponse:
    tests = await service.query(p, results.list_tests)
    tests = [t for t in tests if who.sees(t["definition"]["project"])]
    shown = {t["test_id"] for t in tests}
    runs = await service.query(p, results.list_runs, None, 500)
    last: dict[str, Any] = {}
    for r in runs:  # newest first: the first seen per test is its latest run
        if r["test_id"] in shown:
            last.setdefault(r["test_id"], r)
    return render("tests.html", tests=tests, last=last)


@router.get("/tests/new", response_class=HTMLResponse)
async def new_test(p: PlatformDep, who: Editor) -> HTMLResponse:
    form = forms.form_from_definition(DEMO)
    return render(
        "test_form.html",
        **editor(
            form, "/tests", "New test", json_draft=json.dumps(DEMO, indent=2), **await choices(p)
        ),
    )


@router.post("/tests", response_class=HTMLResponse)
async def create_test(request: Request, p: PlatformDep, who: Editor) -> Any:
    return await save_from_form(request, p, who, "/tests", "New test")


@router.get("/tests/{test_id}", response_class=HTMLResponse)
async def test_page(test_id: str, p: PlatformDep) -> HTMLResponse:
    test = await service.get_test(p, test_id)
    runs = await service.query(p, results.list_runs, test_id, 200)
    return render("test.html", test=test, runs=runs)


@router.get("/tests/{test_id}/edit", response_class=HTMLResponse)
async def edit_test(test_id: str, p: PlatformDep, who: Editor) -> HTMLResponse:
    test = await service.get_test(p, test_id)
    d = test["definition"]
    form = forms.form_from_definition(d)
    ctx = editor(
        form,
        f"/tests/{test_id}",
        f"Edit {d['name']}",
        test_id=test_id,
        json_draft=json.dumps(d, indent=2),
        **await choices(p),
    )
    return render("test_form.html", **ctx)


@router.post("/tests/{test_id}", response_class=HTMLResponse)
async def update_test(test_id: str, request: Request, p: PlatformDep, who: Editor) -> Any:
    test = await service.get_test(p, test_id)
    title = f"Edit {test['definition']['name']}"
    return await save_from_form(
        request, p, who, f"/tests/{test_id}", title, test_id, stored=test["definition"]
    )


@router.post("/tests/{test_id}/duplicate")
async def duplicate_test(test_id: str, p: PlatformDep, who: Editor) -> RedirectResponse:
    new_id = await service.duplicate_test(p, test_id, actor=who.actor)
    return RedirectResponse(f"/tests/{new_id}/edit", status_code=303)


@router.post("/tests/{test_id}/delete")
async def delete_test(test_id: str, p: PlatformDep, who: Editor) -> RedirectResponse:
    await service.delete_test(p, test_id, actor=who.actor)
    return RedirectResponse("/", status_code=303)


@router.post("/tests/{test_id}/run")
async def run_test(test_id: str, p: PlatformDep, who: Tester) -> RedirectResponse:
    run_id = await service.start_run(p, test_id, actor=who.actor)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)
