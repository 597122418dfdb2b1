"""Scenario actions of one call (hold, resume, DTMF, media update) and DTMF reception.

Actions run from the endpoint's tick at `at_s` seconds after the call was
confirmed, never from a callback: each one sends a request (re-INVITE or
INFO) and so may create pjsip objects. Each execution is reported as a
scenario_action event with its result; a failure does not end the call.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pjsua2 as pj

from .context import HostContext

log = logging.getLogger("callmeter.host")
DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc4733", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}
INFO_GAP_S = 0.2  # one INFO per digit, spaced like key presses: concurrent INFOs can be lost


class Scenario:
    def __init__(self, host: HostContext, endpoint_id: str, actions: list[dict[str, Any]]) -> None:
        self.host, self.endpoint_id = host, endpoint_id
        self.pending = list(actions)  # sorted by at_s (protocol_options.scenario)
        self.received: dict[str, str] = {}  # DTMF method -> digits seen, in order
        self.info_queue: list[tuple[float, str]] = []  # (seconds in call, digit) still to send

    def next_at_s(self) -> float:
        """Seconds into the call of the next queued digit or action (inf: none)."""
        return min(
            self.info_queue[0][0] if self.info_queue else math.inf,
            self.pending[0]["at_s"] if self.pending else math.inf,
        )

    def tick(self, call: pj.Call, seconds_in_call: float, own_codecs: list[str]) -> None:
        """Run what is due: queued INFO digits, then actions whose time has come."""
        if self.info_queue and self.info_queue[0][0] <= seconds_in_call:
            _, digit = self.info_queue.pop(0)
            prm = pj.CallSendDtmfParam()
            prm.method, prm.digits = pj.PJSUA_DTMF_METHOD_SIP_INFO, digit
            try:
                call.sendDtmf(prm)
            except pj.Error as exc:
                log.warning("%s: INFO %s failed: %s", self.endpoint_id, digit, exc.info())
        while self.pending and self.pending[0]["at_s"] <= seconds_in_call:
            step = self.pending.pop(0)
            try:
                detail = self._run(call, step, own_codecs)
                ok = True
            except (pj.Error, ValueError) as exc:
                ok, detail = False, exc.info() if isinstance(exc, pj.Error) else str(exc)
            self.host.emit(
                "scenario_action",
                endpoint_id=self.endpoint_id,
                action=step["action"],
                ok=ok,
                detail=detail,
            )

    def _run(self, call: pj.Call, step: dict[str, Any], own_codecs: list[str]) -> str:
        action = step["action"]
        if action == "hold":
            call.setHold(pj.CallOpParam(True))  # re-INVITE with a=sendonly
            return "re-INVITE sendonly"
        if action == "resume":
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD  # re-INVITE with a=sendrecv
            call.reinvite(prm)
            return "re-INVITE sendrecv"
        if action == "dtmf":
            digits = step["digits"]
            if step["method"] == "info":
                at = step["at_s"]
                self.info_queue += [(at + i * INFO_GAP_S, d) for i, d in enumerate(digits)]
            else:
                call.dialDtmf(digits)  # RFC 4733 telephone-event packets in the RTP stream
            return f"{digits} via {step['method']}"
        # update_media: re-offer with the requested codec first; priorities are
        # process-wide, so restore the host's own order right after the offer is built
        codec = self.host.resolve_codecs([step["codec"]])[0]
        self.host.apply_codecs([codec] + [c for c in own_codecs if c != codec])
        try:
            call.reinvite(pj.CallOpParam(True))
        finally:
            self.host.apply_codecs(self.host.receiver_codecs() or own_codecs)
        return f"re-INVITE offering {codec} first"

    def on_dtmf(self, method: int, digit: str) -> None:
        """A digit arrived (callback): record it and report it at once."""
        name = DTMF_METHODS.get(method, str(method))
        self.received[name] = self.received.get(name, "") + digit
        self.host.emit("dtmf_received", endpoint_id=self.endpoint_id, digits=digit, method=name)
