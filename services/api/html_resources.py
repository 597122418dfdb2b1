"""Pages for a project's registrars and SIP account pools (passwords never shown)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from callmeter_storage import resources as rows

from . import resources
from .deps import PlatformDep
from .errors import ApiError, validation_field_and_message
from .forms import MASK, blank_typed_passwords
from .html_tests import posted
from .pages import render
from .principal import CURRENT
from .resources import PoolIn, RegistrarIn

router = APIRouter(include_in_schema=False)
REGISTRAR_FIELDS = (
    "name",
    "project",
    "host",
    "port",
    "transport",
    "domain",
    "outbound_proxy",
    "expires_s",
)


def _input(fields: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """Blank inputs mean "the default"."""
    return {k: fields[k].strip() for k in names if fields.get(k, "").strip()}


def _error(exc: ValidationError | ApiError) -> dict[str, str]:
    if isinstance(exc, ApiError):
        return {exc.field or "": exc.message}
    field, message = validation_field_and_message(dict(exc.errors()[0]))
    return {field or "": message}


def _visible(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only what the caller's projects hold."""
    return [r for r in found if CURRENT.get().sees(r["project"])]


@router.get("/registrars", response_class=HTMLResponse)
async def registrars_page(p: PlatformDep) -> HTMLResponse:
    found = _visible(await resources.query(p, rows.list_registrars))
    return render("registrars.html", registrars=found, form={}, errors={})


@router.post("/registrars", response_class=HTMLResponse)
async def create_registrar(request: Request, p: PlatformDep) -> Any:
    fields = await posted(request)
    try:
        body = RegistrarIn.model_validate(_input(fields, REGISTRAR_FIELDS))
        await resources.save_registrar(p, CURRENT.get(), body)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 422:
            raise
        found = _visible(await resources.query(p, rows.list_registrars))
        return render("registrars.html", 422, registrars=found, form=fields, errors=_error(exc))
    return RedirectResponse("/registrars", status_code=303)


@router.post("/registrars/{registrar_id}/delete")
async def delete_registrar(registrar_id: str, p: PlatformDep) -> RedirectResponse:
    await resources.delete_registrar(p, CURRENT.get(), registrar_id)
    return RedirectResponse("/registrars", status_code=303)


@router.get("/pools", response_class=HTMLResponse)
async def pools_page(p: PlatformDep) -> HTMLResponse:
    found = _visible(await resources.query(p, rows.list_pools))
    return render("pools.html", pools=found, form={}, errors={})


def _pool_csv(pool: dict[str, Any]) -> str:
    """The pool's accounts as the import box shows them: passwords masked."""
    return "\n".join(
        ",".join(
            [a["username"], MASK if a["password_set"] else ""]
            + ([a["auth_username"]] if a["auth_username"] else [])
        )
        for a in pool["accounts"]
    )


def _unmasked(csv_text: str) -> str:
    """A masked password keeps the stored one: drop it before import."""
    return "\n".join(
        ",".join(
            "" if i == 1 and cell.strip() == MASK else cell
            for i, cell in enumerate(line.split(","))
        )
        for line in csv_text.splitlines()
    )


async def _save_pool(request: Request, p: PlatformDep, pool_id: str | None) -> Any:
    fields = await posted(request)
    try:
        body = PoolIn.model_validate(
            _input(fields, ("name", "project")) | {"csv": _unmasked(fields.get("csv", ""))}
        )
        pool_id = await resources.save_pool(p, CURRENT.get(), body, pool_id)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 422:
            raise
        errors = _error(exc)
        csv_text, dropped = blank_typed_passwords(fields.get("csv", ""))
        form = {**fields, "csv": csv_text}  # typed passwords are never sent back
        shown: dict[str, Any] = {"form": form, "errors": errors, "secrets_dropped": dropped}
        if pool_id is None:
            found = _visible(await resources.query(p, rows.list_pools))
            return render("pools.html", 422, pools=found, **shown)
        view = await _view(p, pool_id)
        return render("pool.html", 422, pool=view, **shown)
    return RedirectResponse(f"/pools/{pool_id}", status_code=303)


async def _view(p: PlatformDep, pool_id: str) -> dict[str, Any]:
    found = await resources.pool(p, CURRENT.get(), pool_id, "pool_id")
    return resources.pool_view(found, resources.in_use(p.projector.models.runs, pool_id))


@router.post("/pools", response_class=HTMLResponse)
async def create_pool(request: Request, p: PlatformDep) -> Any:
    return await _save_pool(request, p, None)


@router.get("/pools/{pool_id}", response_class=HTMLResponse)
async def pool_page(pool_id: str, p: PlatformDep) -> HTMLResponse:
    view = await _view(p, pool_id)
    form = {"name": view["name"], "project": view["project"], "csv": _pool_csv(view)}
    return render("pool.html", pool=view, form=form, errors={})


@router.post("/pools/{pool_id}", response_class=HTMLResponse)
async def update_pool(pool_id: str, request: Request, p: PlatformDep) -> Any:
    return await _save_pool(request, p, pool_id)


@router.post("/pools/{pool_id}/delete")
async def delete_pool(pool_id: str, p: PlatformDep) -> RedirectResponse:
    await resources.delete_pool(p, CURRENT.get(), pool_id)
    return RedirectResponse("/pools", status_code=303)
