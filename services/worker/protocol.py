"""JSON-lines protocol between the worker supervisor and an endpoint-host subprocess.

One JSON object per line. Parent -> host lines are commands (field `op`),
host -> parent lines are events (field `ev`, plus `t`, unix time). This
module is pure (no pjsua2) so the supervisor can import it cheaply.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal, TypedDict

import msgspec

from callmeter_vocabulary import Outcome, Phase
from callmeter_vocabulary.sample import Sample, SampleHead, explain

from . import protocol_options

ROLES = ("receiver", "caller", "idle")  # idle: registers, stays, de-registers
PHASES = tuple(Phase)
# What a host may report; WORKER_LOST is the dispatcher's verdict on a whole worker.
OUTCOMES = tuple(o for o in Outcome if o is not Outcome.WORKER_LOST)
NO_CALL_MARGIN_S = 10.0  # default receiver wait for an INVITE: duration_s + this
CODECS = ("PCMU", "PCMA", "G722", "GSM", "speex", "iLBC")
MAX_LINE = 1 << 20  # a command line longer than this is garbage, not a command


class ProtocolError(ValueError):
    """Any malformed line, unknown op/ev or bad field."""


class StartEndpoint(TypedDict):
    op: Literal["start_endpoint"]
    endpoint_id: str
    role: Literal["receiver", "caller", "idle"]
    codecs: list[str]
    duration_s: float
    target_uri: str | None
    username: str
    drop_tx_pct: float
    drop_rx_pct: float
    # receiver: finish NO_INCOMING_CALL when no INVITE came this long after it was ready
    call_wait_s: float
    # optional blocks (protocol_options): registrar mode, credentials, call options, scenario
    registrar: dict[str, Any] | None
    account: dict[str, Any] | None
    options: dict[str, Any]
    scenario: list[dict[str, Any]]
    record_s: float | None  # receiver: record this many seconds for PESQ (None: no)
    # how the caller makes its calls (callplan), its place in the group's rotation;
    # receiver: the caller group's pattern (not single: it takes call after call)
    pattern: dict[str, Any]
    group_index: int
    group_size: int
    calls_from_t: float | None  # caller: unix time its pattern's calls are timed from


class Hangup(TypedDict):
    op: Literal["hangup"]
    endpoint_id: str


class WaitUntil(TypedDict):
    """A receiver waits for its first call until at least this unix time (its caller
    went out after it was ready); sent only after the endpoint's start_endpoint."""

    op: Literal["wait_until"]
    endpoint_id: str
    until_t: float


class Shutdown(TypedDict):
    op: Literal["shutdown"]


Command = StartEndpoint | Hangup | WaitUntil | Shutdown

# Required fields (and their types) of every event; extra fields are allowed.
_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
EVENT_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "host_ready": {"sip_port": (int,)},
    "endpoint_ready": {"endpoint_id": (str,), "contact_uri": (str,)},
    # registrar mode: first successful REGISTER (refresh > 0 for each refresh after it)
    "registered": {
        "endpoint_id": (str,),
        "contact_uri": (str,),
        "time_to_register_ms": _OPT_NUM,
        "expires_s": _OPT_INT,
        "refresh": (int,),
    },
    "registration_failed": {"endpoint_id": (str,), "code": _OPT_INT, "reason": (str,)},
    "scenario_action": {"endpoint_id": (str,), "action": (str,), "ok": (bool,), "detail": (str,)},
    "dtmf_received": {"endpoint_id": (str,), "digits": (str,), "method": (str,)},
    "phase": {"endpoint_id": (str,), "phase": (str,)},
    "call_attempted": {"endpoint_id": (str,), "target_uri": (str,)},
    "call_progress": {
        "endpoint_id": (str,),
        "code": (int,),
        "reason": (str,),
        "ms_since_invite": _OPT_NUM,
    },
    "call_established": {
        "endpoint_id": (str,),
        "codec": _OPT_STR,
        "time_to_trying_ms": _OPT_NUM,
        "time_to_ringing_ms": _OPT_NUM,
        "post_dial_delay_ms": _OPT_NUM,
        "call_setup_ms": _OPT_NUM,
    },
    "call_failed": {"endpoint_id": (str,), "code": _OPT_INT, "reason": (str,)},
    "call_ended": {
        "endpoint_id": (str,),
        "code": _OPT_INT,
        "reason": (str,),
        "duration_s": _OPT_NUM,
    },
    # one second of one direction (callmeter_vocabulary.sample): written and read by msgspec
    "sample": {"endpoint_id": (str,), "sample": (SampleHead,)},
    # one call of a caller, whatever became of it (see callmeter_events.CallRecorded)
    "call_record": {
        "endpoint_id": (str,),
        "seq": (int,),
        "attempted_t": _NUM,
        "outcome": (str,),
        "code": _OPT_INT,
        "reason": (str,),
        "codec": _OPT_STR,
        "time_to_trying_ms": _OPT_NUM,
        "time_to_ringing_ms": _OPT_NUM,
        "post_dial_delay_ms": _OPT_NUM,
        "call_setup_ms": _OPT_NUM,
        "answered_t": _OPT_NUM,
        "duration_s": _OPT_NUM,
        "quality": (dict,),  # {send|recv: {mos, loss_pct, jitter_ms}} means, null if none
    },
    "endpoint_finished": {
        "endpoint_id": (str,),
        "outcome": (str,),
        "reason": (str,),
        "sip_code": _OPT_INT,
    },
    "sip_message": {"endpoint_id": _OPT_STR, "direction": (str,), "text": (str,)},
    # a sampled receiver's recording (path "" and error set when there is none)
    "recording": {
        "endpoint_id": (str,),
        "path": (str,),
        "seconds": _OPT_NUM,
        "codec": _OPT_STR,
        "error": (str,),
    },
    "error": {"message": (str,)},
    "heartbeat": {"calls": (int,), "accounts": (int,)},
}
_ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("phase", "phase"): PHASES,
    ("sip_message", "direction"): ("in", "out"),
    ("endpoint_finished", "outcome"): OUTCOMES,
    ("call_record", "outcome"): OUTCOMES,
}


# PJSIP msg logging (level 4): "TX 512 bytes Request msg INVITE/cseq=1 (tdta..) to UDP
# 127.0.0.1:5060:\n<message>\n--end msg--"
_SIP_LOG_RE = re.compile(r"\b(TX|RX) \d+ bytes .*?:\r?\n(.*?)\r?\n?--end msg--", re.S)
_CALLID_RE = re.compile(r"^(?:Call-ID|i)\s*:\s*(\S+)", re.M | re.I)
_REGISTER_CSEQ_RE = re.compile(r"^CSeq\s*:\s*\d+\s+REGISTER\b", re.M | re.I)
_TO_USER_RE = re.compile(r"^(?:To|t)\s*:[^\r\n]*?sips?:([^@;>\s]+)@", re.M | re.I)


def is_register(text: str) -> bool:
    """A REGISTER request or a response to one (by its CSeq)."""
    return _REGISTER_CSEQ_RE.search(text) is not None


_FROM_USER_RE = re.compile(r"^(?:From|f)\s*:[^\r\n]*?sips?:([^@;>\s]+)@", re.M | re.I)


def from_user(text: str) -> str | None:
    """User part of the From URI (the side that sent the request of this transaction)."""
    m = _FROM_USER_RE.search(text)
    return m.group(1) if m else None


def dialog_side_user(text: str, direction: str) -> str | None:
    """Whose copy of a message this is, when both ends of a dialog live in one process.

    A request is sent by its From user and received by its To user; a response
    travels the other way. So an outgoing request or an incoming response belongs
    to the From user's endpoint, the rest to the To user's.
    """
    is_request = not text.startswith("SIP/2.0")
    originator_side = (direction == "out") == is_request
    return from_user(text) if originator_side else to_user(text)


def to_user(text: str) -> str | None:
    """User part of the To URI (for REGISTER: the AOR being registered)."""
    m = _TO_USER_RE.search(text)
    return m.group(1) if m else None


def parse_sip_log(entry: str) -> tuple[str, str, str | None] | None:
    """A PJSIP log entry -> (direction "in"/"out", message text, Call-ID) or None."""
    m = _SIP_LOG_RE.search(entry)
    if m is None:
        return None
    cid = _CALLID_RE.search(m.group(2))
    return ("out" if m.group(1) == "TX" else "in", m.group(2), cid.group(1) if cid else None)


def encode(msg: dict[str, Any]) -> bytes:
    """One line of compact JSON, newline-terminated. Not validated here: the reader
    validates every line it takes (decode_line), so a host that wrote a bad event gets
    it refused by its supervisor, naming the field. (Checking it here as well cost a
    busy endpoint host about 4 % of its main thread.)"""
    if msg.get("ev") == "sample":  # "ev" first: decode_line knows it by its start
        return _encode_sample(msg) + b"\n"
    return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode() + b"\n"


class _SampleLine(msgspec.Struct):
    """A "sample" event line: the Sample as its JSON array, decoded (and so checked) in C."""

    ev: Literal["sample"]
    t: float
    endpoint_id: str
    sample: Sample  # type: ignore[valid-type]


_encode_sample = msgspec.json.Encoder().encode
_decode_sample = msgspec.json.Decoder(_SampleLine).decode
_SAMPLE_PREFIX = b'{"ev":"sample",'


def event(ev: str, **fields: Any) -> dict[str, Any]:
    """Build an event dict stamped with the current unix time."""
    return {"ev": ev, "t": time.time(), **fields}


def decode_line(line: bytes | str) -> dict[str, Any]:
    """Parse and validate one line (command or event)."""
    if len(line) > MAX_LINE:
        raise ProtocolError("line too long")
    raw = line.encode() if isinstance(line, str) else line
    if raw.startswith(_SAMPLE_PREFIX):
        try:
            s = _decode_sample(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProtocolError(f"bad sample: {explain(exc)}") from None
        return {"ev": "sample", "t": s.t, "endpoint_id": s.endpoint_id, "sample": s.sample}
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a line must be a JSON object")
    return validate(msg)


def validate(msg: dict[str, Any]) -> dict[str, Any]:
    if "op" in msg:
        return _validate_command(msg)
    if "ev" in msg:
        return _validate_event(msg)
    raise ProtocolError("message has neither 'op' nor 'ev'")


def _need(msg: dict[str, Any], key: str, types: tuple[type, ...]) -> Any:
    if key not in msg:
        raise ProtocolError(f"missing field {key!r}")
    value = msg[key]
    # bool is an int subclass; it is a valid value only where bool is asked for
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ProtocolError(f"field {key!r} has the wrong type")
    return value


def _validate_command(msg: dict[str, Any]) -> dict[str, Any]:
    op = msg["op"]
    if op == "shutdown":
        return msg
    if op == "hangup":
        _need_id(msg)
        return msg
    if op == "wait_until":
        _need_id(msg)
        if _need(msg, "until_t", _NUM) <= 0:
            raise ProtocolError("until_t must be a unix time > 0")
        return msg
    if op != "start_endpoint":
        raise ProtocolError(f"unknown op {op!r}")
    _need_id(msg)
    if _need(msg, "role", (str,)) not in ROLES:
        raise ProtocolError(f"role must be one of {ROLES}")
    codecs = _need(msg, "codecs", (list,))
    if not codecs or not all(isinstance(c, str) and c for c in codecs):
        raise ProtocolError("codecs must be a non-empty list of strings")
    if _need(msg, "duration_s", _NUM) <= 0:
        raise ProtocolError("duration_s must be > 0")
    username = _need(msg, "username", (str,))
    if not username or any(ch in username for ch in "@:;<> \t\r\n\"'"):
        raise ProtocolError("username must be a plain SIP user part")
    target = msg.get("target_uri")
    if target is not None and (not isinstance(target, str) or not target.startswith("sip")):
        raise ProtocolError("target_uri must be a sip: URI or null")
    if msg["role"] == "caller" and not target:
        raise ProtocolError("a caller needs target_uri")
    for key in ("drop_tx_pct", "drop_rx_pct"):
        value = msg.setdefault(key, 0)
        if isinstance(value, bool) or not isinstance(value, _NUM) or not 0 <= value <= 100:
            raise ProtocolError(f"{key} must be a number in 0..100")
    msg.setdefault("target_uri", None)
    wait = msg.get("call_wait_s")
    if wait is None:
        msg["call_wait_s"] = msg["duration_s"] + NO_CALL_MARGIN_S
    elif isinstance(wait, bool) or not isinstance(wait, _NUM) or wait <= 0:
        raise ProtocolError("call_wait_s must be a number > 0 or null")
    record_s = msg.setdefault("record_s", None)
    if record_s is not None and (
        isinstance(record_s, bool) or not isinstance(record_s, _NUM) or not 1 <= record_s <= 60
    ):
        raise ProtocolError("record_s must be a number in 1..60 or null")
    index, size = msg.setdefault("group_index", 0), msg.setdefault("group_size", 1)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (index, size)) or not (
        0 <= index < size
    ):
        raise ProtocolError("group_index and group_size: integers, 0 <= group_index < group_size")
    calls_from = msg.setdefault("calls_from_t", None)
    if calls_from is not None and (
        isinstance(calls_from, bool) or not isinstance(calls_from, _NUM)
    ):
        raise ProtocolError("calls_from_t must be a unix time or null")
    try:
        msg["pattern"] = protocol_options.pattern(msg.get("pattern"))
        msg["registrar"] = protocol_options.registrar(msg.get("registrar"))
        msg["account"] = protocol_options.account(msg.get("account"))
        msg["options"] = protocol_options.options(msg.get("options"))
        msg["scenario"] = protocol_options.scenario(msg.get("scenario"))
    except protocol_options.OptionError as exc:
        raise ProtocolError(str(exc)) from None
    return msg


def _need_id(msg: dict[str, Any]) -> None:
    if not _need(msg, "endpoint_id", (str,)):
        raise ProtocolError("endpoint_id must not be empty")


def _validate_event(msg: dict[str, Any]) -> dict[str, Any]:
    ev = msg["ev"]
    fields = EVENT_FIELDS.get(ev)
    if fields is None:
        raise ProtocolError(f"unknown ev {ev!r}")
    _need(msg, "t", _NUM)
    for key, types in fields.items():
        _need(msg, key, types)
    for (name, key), allowed in _ENUMS.items():
        if name == ev and msg[key] not in allowed:
            raise ProtocolError(f"{key} {msg[key]!r} not one of {allowed}")
    return msg
