"""The test editor form <-> test definition, and validation errors per form field. Pure.

Input names are the definition's own field paths (`groups.0.calls`), so a
validation error's field names the input it belongs to without a mapping table.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from callmeter_events import TestDefinition

from .errors import validation_field_and_message

CODECS = ("PCMU", "PCMA", "G722", "GSM", "speex", "iLBC")
TRANSPORTS = ("udp", "tcp", "tls")
_GROUP_KEY = re.compile(r"^groups\.(\d+)\.")
MAX_FORM_GROUPS = 100


def blank_group(index: int) -> dict[str, str]:
    return {
        "name": chr(ord("A") + index) if index < 26 else f"G{index + 1}",
        "endpoints": "1", "calls": "", "codecs": "PCMU", "accounts": "",
        "registrar.host": "", "registrar.port": "5060", "registrar.transport": "udp",
        "registrar.domain": "",
    }  # fmt: skip


def form_from_definition(d: dict[str, Any]) -> dict[str, Any]:
    """Form values (all strings) for an existing definition."""
    groups = []
    for g in d.get("groups", []):
        reg = g.get("registrar") or {}
        accounts = "\n".join(
            ",".join(
                [a["username"], a.get("password", "")]
                + ([a["auth_username"]] if a.get("auth_username") else [])
            )
            for a in g.get("accounts", [])
        )
        groups.append(
            {
                "name": g["name"], "endpoints": str(g["endpoints"]), "calls": g.get("calls") or "",
                "codecs": ", ".join(g.get("codecs") or ["PCMU"]), "accounts": accounts,
                "registrar.host": reg.get("host", ""), "registrar.port": str(reg.get("port", 5060)),
                "registrar.transport": reg.get("transport", "udp"),
                "registrar.domain": reg.get("domain") or "",
            }
        )  # fmt: skip
    return {
        "name": d.get("name", ""),
        "duration_s": _num(d.get("duration_s", 30)),
        "buildup_s": _num(d.get("buildup_s", 0)),
        "groups": groups or [blank_group(0)],
    }


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def form_from_fields(fields: dict[str, str]) -> dict[str, Any]:
    """Form values from posted fields (`groups.<i>.<key>`), groups in index order."""
    indexes = sorted({int(m.group(1)) for k in fields if (m := _GROUP_KEY.match(k))})[
        :MAX_FORM_GROUPS
    ]
    groups = []
    for i in indexes:
        prefix = f"groups.{i}."
        groups.append({k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)})
    return {
        "name": fields.get("name", ""),
        "duration_s": fields.get("duration_s", ""),
        "buildup_s": fields.get("buildup_s", ""),
        "groups": groups,
    }


def parse_accounts(text: str) -> list[dict[str, str]]:
    """Bulk paste, one account a line: `user,password[,auth_user]` (blank lines skipped)."""
    accounts = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        account = {"username": parts[0], "password": parts[1] if len(parts) > 1 else ""}
        if len(parts) > 2 and parts[2]:
            account["auth_username"] = parts[2]
        accounts.append(account)
    return accounts


def definition_from_form(form: dict[str, Any]) -> dict[str, Any]:
    """A definition dict for validation; strings stay strings so pydantic names bad input."""
    groups = []
    for g in form["groups"]:
        group: dict[str, Any] = {
            "name": g.get("name", "").strip(),
            "endpoints": g.get("endpoints", "").strip(),
            "codecs": [c.strip() for c in re.split(r"[,\s]+", g.get("codecs", "")) if c.strip()],
        }
        if g.get("calls", "").strip():
            group["calls"] = g["calls"].strip()
        if g.get("registrar.host", "").strip():
            group["registrar"] = {
                "host": g["registrar.host"].strip(),
                "port": g.get("registrar.port", "").strip() or "5060",
                "transport": g.get("registrar.transport", "udp"),
            }
            if g.get("registrar.domain", "").strip():
                group["registrar"]["domain"] = g["registrar.domain"].strip()
        accounts = parse_accounts(g.get("accounts", ""))
        if accounts:
            group["accounts"] = accounts
        groups.append(group)
    out: dict[str, Any] = {"name": form["name"].strip(), "groups": groups}
    out["duration_s"] = form["duration_s"].strip() or "0"
    if form["buildup_s"].strip():
        out["buildup_s"] = form["buildup_s"].strip()
    return out


def field_errors(exc: ValidationError, form: dict[str, Any]) -> dict[str, str]:
    """Messages keyed by the form input they belong to (first message per input wins).

    An error deeper than any input (`groups.0.accounts.2.username`) goes to the
    nearest enclosing input (`groups.0.accounts`); one about no input goes to "".
    """
    inputs = {"name", "duration_s", "buildup_s", "groups"}
    for i, g in enumerate(form["groups"]):
        inputs |= {f"groups.{i}.{k}" for k in blank_group(i)} | {f"groups.{i}.{k}" for k in g}
    errors: dict[str, str] = {}
    for err in exc.errors():
        field, message = validation_field_and_message(dict(err))
        parts = (field or "").split(".")
        key = ""
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate in inputs:  # "groups.0.registrar.port" is itself an input name
                key = candidate
                break
        errors.setdefault(key, message)
    return errors


def validate(form: dict[str, Any]) -> tuple[TestDefinition | None, dict[str, str]]:
    """The definition, or the errors per input."""
    try:
        return TestDefinition.model_validate(definition_from_form(form)), {}
    except ValidationError as exc:
        return None, field_errors(exc, form)
