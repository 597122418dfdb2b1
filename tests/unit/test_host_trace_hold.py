"""With a pattern, a call after an endpoint's first keeps its SIP messages until its
outcome: emitted if it failed, dropped if it succeeded (Endpoint.hold_trace)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("pjsua2")

from callmeter_worker.host.endpoint import Endpoint  # noqa: E402


class Emits:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def emit(self, ev: str, **fields: Any) -> None:
        self.sent.append((ev, fields))


def test_a_patterns_later_call_keeps_its_trace_only_if_it_fails() -> None:
    host = Emits()
    cmd = {
        "endpoint_id": "g-1",
        "role": "caller",
        "duration_s": 30,
        "call_wait_s": 20,
        "username": "u1",
        "options": {},
    }
    e = Endpoint(host, cmd, ["PCMA/8000/1"])  # type: ignore[arg-type]
    e.call = SimpleNamespace(disconnected=False)  # type: ignore[assignment]
    assert not e.hold_trace("out", "INVITE 1")  # the first call: the host emits it now
    e.detail = False  # a later call of the pattern
    assert e.hold_trace("out", "INVITE 2")
    e.release_trace("SUCCESS")
    assert host.sent == [] and e.held_trace == []
    assert e.hold_trace("out", "INVITE 3") and e.hold_trace("in", "SIP/2.0 503")
    e.release_trace("CALL_FAILED")
    assert host.sent == [
        ("sip_message", {"endpoint_id": "g-1", "direction": "out", "text": "INVITE 3"}),
        ("sip_message", {"endpoint_id": "g-1", "direction": "in", "text": "SIP/2.0 503"}),
    ]
    e.call = None
    assert not e.hold_trace("in", "SIP/2.0 200")  # between calls: not held
