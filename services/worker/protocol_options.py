"""start_endpoint's optional blocks: registrar, account, call options, scenario.

Pure (no pjsua2, no pydantic): the host validates what it is given and fills
defaults here. The defaults mirror libs/events testdef.CallOptions; the
host does not import the event library because every host process would
pay for pydantic at start-up, and there are hundreds of hosts per worker.
"""

from __future__ import annotations

import re
from typing import Any

TRANSPORTS = ("udp", "tcp", "tls")
ACTIONS = ("hold", "resume", "dtmf", "update_media")
DEFAULT_OPTIONS: dict[str, Any] = {
    "prack": "off",
    "session_timer": "off",
    "session_expires_s": 1800,
    "min_se_s": 90,
    "answer_delay_s": 0.0,
    "ring_time_s": 0.0,
    "invite_timeout_s": 60.0,
    "transport": "udp",
    "srtp": "off",
    "dscp_rtp": None,
}
_CHOICES = {
    "prack": ("off", "supported", "required"),
    "session_timer": ("off", "optional", "required", "always"),
    "transport": TRANSPORTS,
    "srtp": ("off", "optional", "mandatory"),
}
_DIGITS = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


class OptionError(ValueError):
    """A bad field in one of the optional blocks (protocol reports it)."""


def _num(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OptionError(f"{key} must be a number in {low}..{high}")
    return value


def registrar(block: Any) -> dict[str, Any] | None:
    """{host, port, transport, domain, outbound_proxy, expires_s} or None (direct mode)."""
    if block is None:
        return None
    if not isinstance(block, dict) or not _HOST.match(str(block.get("host", ""))):
        raise OptionError("registrar.host must be a host name or address")
    out = {
        "host": block["host"],
        "port": int(_num(block.get("port", 5060), "registrar.port", 1, 65535)),
        "transport": block.get("transport") or "udp",
        "domain": block.get("domain") or None,
        "outbound_proxy": block.get("outbound_proxy") or None,
        "expires_s": int(_num(block.get("expires_s", 300), "registrar.expires_s", 5, 86_400)),
    }
    if out["transport"] not in TRANSPORTS:
        raise OptionError(f"registrar.transport must be one of {TRANSPORTS}")
    for key in ("domain", "outbound_proxy"):
        if out[key] is not None and not _HOST.match(str(out[key])):
            raise OptionError(f"registrar.{key} must be host[:port]")
    return out


def account(block: Any) -> dict[str, Any] | None:
    """{username, password, auth_username} or None."""
    if block is None:
        return None
    if not isinstance(block, dict) or not isinstance(block.get("username"), str):
        raise OptionError("account.username must be a string")
    password = block.get("password") or ""
    auth = block.get("auth_username") or None
    if not isinstance(password, str) or not (auth is None or isinstance(auth, str)):
        raise OptionError("account.password / auth_username must be strings")
    return {"username": block["username"], "password": password, "auth_username": auth}


def options(block: Any) -> dict[str, Any]:
    """Call options with every default filled in."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise OptionError("options must be an object")
    unknown = set(block) - set(DEFAULT_OPTIONS)
    if unknown:
        raise OptionError(f"unknown options: {sorted(unknown)}")
    out = {**DEFAULT_OPTIONS, **{k: v for k, v in block.items() if v is not None}}
    for key, allowed in _CHOICES.items():
        if out[key] not in allowed:
            raise OptionError(f"options.{key} must be one of {allowed}")
    for key in ("answer_delay_s", "ring_time_s"):
        _num(out[key], f"options.{key}", 0, 300)
    _num(out["invite_timeout_s"], "options.invite_timeout_s", 0.1, 600)
    _num(out["session_expires_s"], "options.session_expires_s", 90, 86_400)
    _num(out["min_se_s"], "options.min_se_s", 90, 86_400)
    if out["dscp_rtp"] is not None:
        _num(out["dscp_rtp"], "options.dscp_rtp", 0, 63)
    return out


def scenario(block: Any) -> list[dict[str, Any]]:
    """Actions sorted by time; each {at_s, action, digits, method, codec}."""
    if block is None:
        return []
    if not isinstance(block, list) or len(block) > 50:
        raise OptionError("scenario must be a list of at most 50 actions")
    out = []
    for i, step in enumerate(block):
        if not isinstance(step, dict) or step.get("action") not in ACTIONS:
            raise OptionError(f"scenario.{i}.action must be one of {ACTIONS}")
        item = {
            "at_s": _num(step.get("at_s", 0), f"scenario.{i}.at_s", 0, 86_400),
            "action": step["action"],
            "digits": step.get("digits"),
            "method": step.get("method") or "rfc4733",
            "codec": step.get("codec"),
        }
        if item["action"] == "dtmf" and not _DIGITS.match(str(item["digits"] or "")):
            raise OptionError(f"scenario.{i}.digits must be DTMF digits (0-9 * # A-D)")
        if item["method"] not in ("rfc4733", "info"):
            raise OptionError(f"scenario.{i}.method must be rfc4733 or info")
        if item["action"] == "update_media" and not isinstance(item["codec"], str):
            raise OptionError(f"scenario.{i}.codec: update_media needs a codec")
        out.append(item)
    return sorted(out, key=lambda s: s["at_s"])


PATTERNS = ("single", "repeat", "rate")


def pattern(block: Any) -> dict[str, Any]:
    """The group's call pattern (callmeter_events.testdef) as callplan reads it."""
    if block is None:
        return {"kind": "single"}
    if not isinstance(block, dict) or block.get("kind") not in PATTERNS:
        raise OptionError(f"pattern.kind must be one of {PATTERNS}")
    if block["kind"] == "single":
        return {"kind": "single"}
    out = dict(block)
    out["hold_s"] = _num(block.get("hold_s"), "pattern.hold_s", 0.001, 86_400)
    if block["kind"] == "repeat":
        out["pause_s"] = _num(block.get("pause_s") or 0.0, "pattern.pause_s", 0, 86_400)
        if block.get("calls") is not None:
            _num(block["calls"], "pattern.calls", 1, 1_000_000)
        return out
    steps = block.get("steps") or []
    if not isinstance(steps, list):
        raise OptionError("pattern.steps must be a list")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise OptionError(f"pattern.steps.{i} must be an object")
        _num(step.get("at_s"), f"pattern.steps.{i}.at_s", 0, 86_400)
        _num(step.get("cps"), f"pattern.steps.{i}.cps", 0, 10_000)
    if not steps:
        _num(block.get("cps"), "pattern.cps", 0.001, 10_000)
        if block.get("cps_end") is not None:
            _num(block["cps_end"], "pattern.cps_end", 0.001, 10_000)
            _num(block.get("ramp_s"), "pattern.ramp_s", 0.001, 86_400)
    if block.get("hold", "fixed") not in ("fixed", "exponential"):
        raise OptionError("pattern.hold must be fixed or exponential")
    return out
