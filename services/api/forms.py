"""The test editor form <-> test definition, and validation errors per form field. Pure.

Input names are the definition's own field paths (`groups.0.calls`), so a
validation error's field names the input it belongs to without a mapping table.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import ValidationError

from callmeter_events import TestDefinition
from callmeter_events.testdef import CallOptions, Codec, RatePattern, ScenarioAction
from callmeter_events.thresholds import parse as parse_threshold

from .errors import validation_field_and_message

CODECS: tuple[str, ...] = get_args(Codec)
TRANSPORTS = ("udp", "tcp", "tls")
_GROUP_KEY = re.compile(r"^groups\.(\d+)\.")
_ROW_KEY = re.compile(r"^(\w+)\.(\d+)\.(\w+)$")  # scenario.0.at_s, webhooks.1.url
MAX_FORM_GROUPS = 100
MAX_FORM_ROWS = 50
# Call options: the choices come from the model, so the editor cannot drift from it.
OPTION_KEYS = tuple(CallOptions.model_fields)
OPTION_CHOICES = {
    k: get_args(f.annotation) for k, f in CallOptions.model_fields.items() if get_args(f.annotation)
}
OPTION_CHOICES = {k: v for k, v in OPTION_CHOICES.items() if all(isinstance(x, str) for x in v)}
ACTIONS = get_args(ScenarioAction.model_fields["action"].annotation)
DTMF_METHODS = get_args(ScenarioAction.model_fields["method"].annotation)
ACTION_KEYS = ("at_s", "action", "digits", "method", "codec")
# A group's call pattern: one input per field of every kind (hold_s is shared by repeat
# and rate); the kind chosen says which of them count.
PATTERN_KINDS = ("single", "repeat", "rate")
PATTERN_FIELDS = {
    "repeat": ("hold_s", "pause_s", "calls"),
    "rate": ("cps", "cps_end", "ramp_s", "steps", "hold", "hold_s", "max_calls", "seed"),
}
# Every pattern input, each once: the kind, then the fields of each kind.
PATTERN_KEYS = tuple(dict.fromkeys(("kind", *PATTERN_FIELDS["repeat"], *PATTERN_FIELDS["rate"])))
HOLDS = get_args(RatePattern.model_fields["hold"].annotation)
CAPACITY_KEYS: tuple[str, ...] = ("endpoints_per_step", "cps_per_step", "step_s", "settle_s")
CAPACITY_KEYS += ("stop_when", "target_calls", "target_cps")
# A kind named in a validation error's path ("groups.0.pattern.rate.cps"): the inputs
# have no kind in their names.
_PATTERN_KIND_PATH = re.compile(r"\.pattern\.(?:single|repeat|rate)\b")


def blank_action() -> dict[str, str]:
    return {"at_s": "5", "action": "hold", "digits": "", "method": "rfc4733", "codec": ""}


def options_form(options: dict[str, Any]) -> dict[str, str]:
    """`options.<key>` form values, defaults filled in (an unset DSCP stays empty)."""
    merged = {**CallOptions().model_dump(), **options}
    return {f"options.{k}": "" if merged[k] is None else _num(merged[k]) for k in OPTION_KEYS}


def rows_from_fields(fields: dict[str, str], name: str) -> list[dict[str, str]]:
    """Rows posted as `<name>.<j>.<key>`, in index order."""
    rows: dict[int, dict[str, str]] = {}
    for k, v in fields.items():
        if (m := _ROW_KEY.match(k)) and m.group(1) == name:
            rows.setdefault(int(m.group(2)), {})[m.group(3)] = v
    return [rows[j] for j in sorted(rows)[:MAX_FORM_ROWS]]


def pattern_form(pattern: dict[str, Any] | None) -> dict[str, str]:
    """`pattern.<key>` form values; the rate's steps as `at_s:cps` pairs."""
    p = pattern or {}
    out = {f"pattern.{k}": "" if p.get(k) is None else _num(p[k]) for k in PATTERN_KEYS}
    out["pattern.kind"] = p.get("kind", "single")
    out["pattern.hold"] = p.get("hold", "fixed")
    out["pattern.steps"] = ", ".join(
        f"{_num(s['at_s'])}:{_num(s['cps'])}" for s in p.get("steps") or []
    )
    if p.get("kind") != "rate":
        out["pattern.seed"] = ""
    return out


def pattern_from_form(g: dict[str, str]) -> dict[str, Any] | None:
    """The group's pattern dict (strings kept for pydantic), or None for `single`."""
    kind = g.get("pattern.kind", "single").strip() or "single"
    if kind == "single":
        return None
    pattern: dict[str, Any] = {"kind": kind}
    for key in PATTERN_FIELDS.get(kind, ()):
        value = g.get(f"pattern.{key}", "").strip()
        if key == "steps" and value:
            pattern["steps"] = [_step(part) for part in re.split(r"[,;\s]+", value) if part]
        elif value:
            pattern[key] = value
    return pattern


def _step(text: str) -> dict[str, str]:
    at_s, _, cps = text.partition(":")
    return {"at_s": at_s, "cps": cps}


def capacity_form(capacity: dict[str, Any] | None) -> dict[str, str]:
    """`capacity.<key>` form values (all empty: no capacity search)."""
    c = capacity or {}
    out = {f"capacity.{k}": "" if c.get(k) is None else _num(c[k]) for k in CAPACITY_KEYS}
    out["capacity.stop_when"] = "\n".join(c.get("stop_when") or [])
    return out


def capacity_from_form(form: dict[str, Any]) -> dict[str, Any] | None:
    """The capacity search if any of its inputs is filled in (pydantic names what is
    missing), else None."""
    given = {k: v.strip() for k in CAPACITY_KEYS if (v := form.get(f"capacity.{k}", "")).strip()}
    if not given:
        return None
    if "stop_when" in given:
        given["stop_when"] = [t.strip() for t in given["stop_when"].splitlines() if t.strip()]
    return given


def blank_group(index: int) -> dict[str, Any]:
    return {
        "name": chr(ord("A") + index) if index < 26 else f"G{index + 1}",
        "endpoints": "1",
        "calls": "",
        "codecs": "PCMU",
        "accounts": "",
        "registrar.host": "",
        "registrar.port": "5060",
        "registrar.transport": "udp",
        "registrar.domain": "",
        "registrar_id": "",
        "account_pool": "",
        **options_form({}),
        **pattern_form(None),
        "scenario": [],
        "audio": "",
    }


def form_from_definition(d: dict[str, Any]) -> dict[str, Any]:
    """Form values (all strings) for an existing definition."""
    groups = []
    for g in d.get("groups", []):
        reg = g.get("registrar") or {}
        accounts = "\n".join(
            ",".join(
                [a["username"], MASK if a.get("password_set") else ""]
                + ([a["auth_username"]] if a.get("auth_username") else [])
            )
            for a in g.get("accounts", [])
        )
        groups.append(
            {
                "name": g["name"],
                "endpoints": str(g["endpoints"]),
                "calls": g.get("calls") or "",
                "codecs": ", ".join(g.get("codecs") or ["PCMU"]),
                "accounts": accounts,
                "registrar.host": reg.get("host", ""),
                "registrar.port": str(reg.get("port", 5060)),
                "registrar.transport": reg.get("transport", "udp"),
                "registrar.domain": reg.get("domain") or "",
                "registrar_id": g.get("registrar_id") or "",
                "account_pool": g.get("account_pool") or "",
                **options_form(g.get("options") or {}),
                **pattern_form(g.get("pattern")),
                "audio": g.get("audio") or "",
                "scenario": [
                    {
                        "at_s": _num(a["at_s"]),
                        "action": a["action"],
                        "digits": a.get("digits") or "",
                        "method": a.get("method") or "rfc4733",
                        "codec": a.get("codec") or "",
                    }
                    for a in g.get("scenario") or []
                ],
            }
        )
    return {
        "name": d.get("name", ""),
        "project": d.get("project", "default"),
        "duration_s": _num(d.get("duration_s", 30)),
        "buildup_s": _num(d.get("buildup_s", 0)),
        "speech_quality_calls": _num(d.get("speech_quality_calls", 3)),
        "groups": groups or [blank_group(0)],
        "thresholds": "\n".join(d.get("thresholds") or []),
        "webhooks": [
            {"url": w["url"], "secret": MASK if w.get("secret_set") else ""}
            for w in d.get("webhooks") or []
        ],
        **capacity_form(d.get("capacity")),
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
        own = {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
        group: dict[str, Any] = {k: v for k, v in own.items() if not k.startswith("scenario.")}
        group["scenario"] = rows_from_fields(own, "scenario")
        groups.append(group)
    webhooks = [
        w for w in rows_from_fields(fields, "webhooks") if any(v.strip() for v in w.values())
    ]
    return {
        "name": fields.get("name", ""),
        "project": fields.get("project", ""),
        "duration_s": fields.get("duration_s", ""),
        "buildup_s": fields.get("buildup_s", ""),
        "speech_quality_calls": fields.get("speech_quality_calls", ""),
        "groups": groups,
        "thresholds": fields.get("thresholds", ""),
        "webhooks": webhooks,
        **{f"capacity.{k}": fields.get(f"capacity.{k}", "") for k in CAPACITY_KEYS},
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
        for key in ("registrar_id", "account_pool"):  # project resources, by id
            if g.get(key, "").strip():
                group[key] = g[key].strip()
        accounts = parse_accounts(g.get("accounts", ""))
        if accounts:
            group["accounts"] = accounts
        options = {k: v.strip() for k in OPTION_KEYS if (v := g.get(f"options.{k}", "")).strip()}
        if options:
            group["options"] = options
        if g.get("scenario"):
            group["scenario"] = [scenario_action(row) for row in g["scenario"]]
        if g.get("audio", "").strip():
            group["audio"] = g["audio"].strip()
        if (pattern := pattern_from_form(g)) is not None:
            group["pattern"] = pattern
        groups.append(group)
    out: dict[str, Any] = {"name": form["name"].strip(), "groups": groups}
    if form.get("project", "").strip():
        out["project"] = form["project"].strip()
    out["duration_s"] = form["duration_s"].strip() or "0"
    if form["buildup_s"].strip():
        out["buildup_s"] = form["buildup_s"].strip()
    if form.get("speech_quality_calls", "").strip():
        out["speech_quality_calls"] = form["speech_quality_calls"].strip()
    thresholds = [t.strip() for t in form.get("thresholds", "").splitlines() if t.strip()]
    if thresholds:
        out["thresholds"] = thresholds
    if form.get("webhooks"):
        out["webhooks"] = [
            {"url": w.get("url", "").strip(), "secret": w.get("secret", "")}
            for w in form["webhooks"]
        ]
    if (capacity := capacity_from_form(form)) is not None:
        out["capacity"] = capacity
    return out


def scenario_action(row: dict[str, str]) -> dict[str, str]:
    """One builder row as a ScenarioAction dict; empty digits/codec mean "not given"."""
    action = {k: row.get(k, "").strip() for k in ("at_s", "action", "method")}
    action["method"] = action["method"] or "rfc4733"
    for k in ("digits", "codec"):
        if row.get(k, "").strip():
            action[k] = row[k].strip()
    return action


def field_errors(exc: ValidationError, form: dict[str, Any]) -> dict[str, str]:
    """Messages keyed by the form input they belong to (first message per input wins).

    An error deeper than any input (`groups.0.accounts.2.username`) goes to the
    nearest enclosing input (`groups.0.accounts`); one about no input goes to "".
    """
    inputs = {
        "name",
        "duration_s",
        "buildup_s",
        "speech_quality_calls",
        "groups",
        "thresholds",
        "webhooks",
        *(f"capacity.{k}" for k in CAPACITY_KEYS),
    }
    for i, g in enumerate(form["groups"]):
        inputs |= {f"groups.{i}.{k}" for k in blank_group(i)} | {f"groups.{i}.{k}" for k in g}
        for j, _ in enumerate(g.get("scenario") or []):
            inputs |= {f"groups.{i}.scenario.{j}.{k}" for k in ACTION_KEYS}
    for j, _ in enumerate(form.get("webhooks") or []):
        inputs |= {f"webhooks.{j}.url", f"webhooks.{j}.secret"}
    errors: dict[str, str] = {}
    for err in exc.errors():
        field, message = validation_field_and_message(dict(err))
        if field:  # a pattern's kind is in the path, not in the input names
            named = _PATTERN_KIND_PATH.sub(".pattern", field)
            if named.endswith(".pattern"):  # about the pattern as a whole: its kind
                named += ".kind"
            message = message.replace(f"{field}: ", f"{named}: ", 1)
            field = named
        parts = (field or "").split(".")
        key = ""
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate in inputs:  # "groups.0.registrar.port" is itself an input name
                key = candidate
                break
        errors.setdefault(key, message)
    return errors


def threshold_error(text: str) -> str | None:
    """The first bad threshold by its line in the box (pydantic checks them only once
    every other field is valid, and by index among the non-blank lines)."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                parse_threshold(line)
            except ValueError as exc:
                return f"thresholds, line {n}: {exc}"
    return None


# What the editor shows for a stored secret (it never has the secret itself): left as
# it is, the stored secret is kept (keep_secrets); replaced, the new one is stored.
MASK = "********"


# Settings the API takes that the editor has no input for: editing keeps them.
HIDDEN_GROUP_KEYS = ("target_uri", "region", "workers", "drop_tx_pct", "drop_rx_pct")
HIDDEN_REGISTRAR_KEYS = ("expires_s", "outbound_proxy")


def keep_secrets(definition: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """A masked password or webhook secret becomes the stored one's reference (the
    account of that username in that group, the webhook of that URL); else none."""
    stored = stored or {}
    refs = {
        (g["name"], a["username"]): a.get("password_ref")
        for g in stored.get("groups", [])
        for a in g.get("accounts") or []
    }
    hook_refs = {w["url"]: w.get("secret_ref") for w in stored.get("webhooks") or []}

    def account(group: str, a: dict[str, Any]) -> dict[str, Any]:
        if a.get("password") != MASK:
            return a
        rest = {k: v for k, v in a.items() if k != "password"}
        ref = refs.get((group, a["username"]))
        return rest | ({"password_ref": ref} if ref else {})

    def hook(w: dict[str, Any]) -> dict[str, Any]:
        if w.get("secret") != MASK:
            return w
        ref = hook_refs.get(w["url"])
        return {"url": w["url"]} | ({"secret_ref": ref} if ref else {})

    groups = [
        {**g, "accounts": [account(g.get("name", ""), a) for a in g["accounts"]]}
        if g.get("accounts")
        else g
        for g in definition["groups"]
    ]
    out = {**definition, "groups": groups}
    if definition.get("webhooks"):
        out["webhooks"] = [hook(w) for w in definition["webhooks"]]
    return out


def keep_hidden(definition: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """The form's definition plus what the stored one has beyond the form: its project,
    and per group by name (a target URI only while the group calls no other group); and
    its masked secrets."""
    definition = keep_secrets(definition, stored)
    if not stored:
        return definition
    out = {**definition, "project": definition.get("project") or stored.get("project", "default")}
    before = {g["name"]: g for g in stored.get("groups", [])}
    groups = []
    for g in definition["groups"]:
        old = before.get(g.get("name"), {})
        g = {**g, **{k: old[k] for k in HIDDEN_GROUP_KEYS if old.get(k) not in (None, [], 0)}}
        if g.get("calls"):
            g.pop("target_uri", None)
        if g.get("registrar") and old.get("registrar"):
            g["registrar"] = {
                **g["registrar"],
                **{
                    k: old["registrar"][k] for k in HIDDEN_REGISTRAR_KEYS if old["registrar"].get(k)
                },
            }
        groups.append(g)
    return {**out, "groups": groups}


def validate(
    form: dict[str, Any], stored: dict[str, Any] | None = None
) -> tuple[TestDefinition | None, dict[str, str]]:
    """The definition, or the errors per input; `stored`: the saved test being edited."""
    bad_threshold = threshold_error(form.get("thresholds", ""))
    try:
        definition = TestDefinition.model_validate(keep_hidden(definition_from_form(form), stored))
    except ValidationError as exc:
        errors = field_errors(exc, form)
        if bad_threshold:
            errors["thresholds"] = bad_threshold
        return None, errors
    assert bad_threshold is None  # the model would have refused it
    return definition, {}


# A page never sends back a password or webhook secret the user typed (a form shown
# again after an error would otherwise carry it): the field comes back empty, with a
# note; a stored one's mask stays (it keeps the stored secret).
_JSON_SECRET = re.compile(r'("(?:password|secret)"\s*:\s*)"(?:[^"\\]|\\.)*"')


def blank_typed_passwords(csv_text: str) -> tuple[str, bool]:
    """`user,password[,auth_user]` lines with each typed password emptied; True if
    any was."""
    lines, dropped = [], False
    for line in csv_text.splitlines():
        cells = line.split(",")
        if len(cells) > 1 and cells[1].strip() not in ("", MASK):
            cells[1], dropped = "", True
        lines.append(",".join(cells))
    return "\n".join(lines), dropped


def forget_typed_secrets(form: dict[str, Any]) -> bool:
    """Empty the passwords and webhook secrets typed in an editor form; True if any was."""
    dropped = False
    for group in form.get("groups") or []:
        group["accounts"], gone = blank_typed_passwords(group.get("accounts", ""))
        dropped |= gone
    for hook in form.get("webhooks") or []:
        if hook.get("secret", "") not in ("", MASK):
            hook["secret"], dropped = "", True
    return dropped


def forget_json_secrets(text: str) -> tuple[str, bool]:
    """The JSON editor's draft with every `"password"` and `"secret"` value emptied
    (by text: the draft may not parse); True if any was."""
    out, count = _JSON_SECRET.subn(lambda m: m[1] + '""', text)
    return out, count > 0 and out != text
