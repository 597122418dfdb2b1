"""pjsua2 Account/Call subclasses and the per-endpoint state machine of the host.

Everything here runs in the host's main thread: pjsua2 callbacks fire inside
ep.libHandleEvents(), and `Endpoint.tick` is called from the same loop. The
callbacks only record facts and emit events; anything that creates or drops
pjsua2 objects (hangup, releasing Call/Account) happens in `tick`, outside
callbacks, as PJSUA2.md requires.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

from .stream_stats import StreamSampler, read_snapshot

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("callmeter.host")
_RURI_RE = re.compile(r"\s*INVITE\s+sips?:([^@;>\s]+)@")
RECEIVER_SAFETY_S = 10.0  # receiver hangs up this long after duration_s if no BYE came
WAIT_FOR_CALL_S = 120.0  # receiver with no INVITE by then finishes TIMEOUT
SETUP_TIMEOUT_S = 60.0  # caller: no answer by then -> CANCEL, outcome TIMEOUT
TEARDOWN_TIMEOUT_S = 40.0  # BYE/CANCEL retransmissions end by 32 s (Timer F/B)
FIRST_RTP_POLL_S = 0.02  # stat polling rate until the first RTP packet is seen


def _guard(fn):
    """A Python exception escaping a pjsua2 director callback can abort the process."""

    def wrapper(self, *args):
        try:
            fn(self, *args)
        except Exception:  # noqa: BLE001 - must never propagate into C++
            log.exception("callback %s failed", fn.__name__)

    return wrapper


def _request_user(msg: str) -> str | None:
    """User part of the Request-URI: 'INVITE sip:alice@host:5060 SIP/2.0' -> 'alice'."""
    m = _RURI_RE.match(msg)
    return m.group(1) if m else None


class HostAccount(pj.Account):
    def __init__(self, host: Host, endpoint: Endpoint) -> None:
        super().__init__()
        self.host, self.endpoint = host, endpoint

    @_guard
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = HostCall(self.host, self, None, prm.callId)
        ep = self.endpoint
        if _request_user(prm.rdata.wholeMsg) != ep.username:
            # pjsua hands INVITEs for unknown users to the default account; a receiver
            # must not answer a call meant for an endpoint that is not (yet) here
            self.host.reject(call, 404)
            return
        if ep.role != "receiver" or ep.call is not None or ep.finished:
            self.host.reject(call, 486)  # busy: this endpoint already has its call
            return
        ep.attach_incoming(call)


class HostCall(pj.Call):
    def __init__(self, host: Host, acc: HostAccount, endpoint: Endpoint | None, cid: int) -> None:
        super().__init__(acc, cid)
        self.host, self.endpoint = host, endpoint
        self.disconnected = False

    @_guard
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            ci = self.getInfo()
        except pj.Error:  # PJSIP_ESESSIONTERMINATED: the call is gone
            self.disconnected = True
            return
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True  # released by the main loop, not here
        if self.endpoint is not None:
            self.endpoint.on_call_state(ci)

    @_guard
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        if self.endpoint is None or prm.e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = prm.e.body.tsxState.tsx
        if tsx.method == "INVITE" and tsx.role == pj.PJSIP_ROLE_UAC and tsx.statusCode:
            self.endpoint.on_invite_response(tsx.statusCode, tsx.statusText)

    @_guard
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.host.connect_audio(self.getAudioMedia(mi.index))

    @_guard
    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:
        # Last moment the stream statistics exist: take the final sample here.
        if self.endpoint is not None and prm.streamIdx == 0:
            self.endpoint.final_sample(self)


class Endpoint:
    """One start_endpoint command: its account, its (single) call, its outcome."""

    def __init__(self, host: Host, cmd: dict[str, Any], codecs: list[str]) -> None:
        self.host = host
        self.id: str = cmd["endpoint_id"]
        self.role: str = cmd["role"]
        self.codecs = codecs
        self.duration_s = float(cmd["duration_s"])
        self.target_uri: str | None = cmd.get("target_uri")
        self.username: str = cmd["username"]
        self.sip_call_id: str | None = None
        self.contact_uri = f"sip:{cmd['username']}@{host.bind}:{host.sip_port}"
        self.account: HostAccount | None = None
        self.call: HostCall | None = None
        self.phase = ""
        self.started = time.monotonic()
        self.t_invite = self.t_trying = self.t_ringing = self.t_200 = None
        self.t_confirmed: float | None = None
        self.first_rtp_ms: float | None = None
        self.seen_codes: set[int] = set()
        self.end_code: int | None = None
        self.end_reason = ""
        self.sampler = StreamSampler()
        self.seq = {"send": 0, "recv": 0}
        self.next_sample = 0.0
        self.next_rtp_poll = 0.0
        self.rx_packets = 0  # from the newest snapshot: did media flow?
        self.final_done = False
        self.hangup_at: float | None = None  # when we sent BYE/CANCEL
        self.forced: str | None = None  # outcome forced by a timeout
        self.stopped = False  # a hangup command arrived
        self.finished = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.set_phase("INITIALIZING")
        cfg = self.host.account_config(self.contact_uri)
        account = HostAccount(self.host, self)
        account.create(cfg)  # raises pj.Error; the object is then never registered
        self.account = self.host.accounts[self.id] = account
        self.host.emit("endpoint_ready", endpoint_id=self.id, contact_uri=self.contact_uri)
        if self.role == "receiver":
            # pjsua builds the SDP answer before onIncomingCall runs, so a receiver's
            # codecs must be in place now; see Host.receiver_codecs for the sharing rule
            self.host.apply_codecs(self.host.receiver_codecs())
            return
        self.host.apply_codecs(self.codecs)  # the SDP offer is built inside makeCall
        call = HostCall(self.host, self.account, self, pj.PJSUA_INVALID_ID)
        self.call = call
        self.t_invite = time.monotonic()
        self.set_phase("CALLING")
        try:
            call.makeCall(self.target_uri, pj.CallOpParam(True))
        except pj.Error as exc:
            self.call = None  # pjsua never allocated the call; nothing to release
            outcome = "OSERROR" if "address" in exc.info().lower() else "CALL_FAILED"
            self.host.emit("call_failed", endpoint_id=self.id, code=None, reason=exc.info())
            self.finish(outcome, f"makeCall failed: {exc.info()}", None)
            return
        self.sip_call_id = self.host.track_call_id(call, self.id)
        self.host.apply_codecs(self.host.receiver_codecs())

    def attach_incoming(self, call: HostCall) -> None:
        """Receiver: auto-answer 180 then 200 (inside onIncomingCall, as pjsua2 allows)."""
        self.call, call.endpoint = call, self
        self.t_invite = time.monotonic()
        self.sip_call_id = self.host.track_call_id(call, self.id)
        self.set_phase("RINGING")
        prm = pj.CallOpParam()
        prm.statusCode = 180
        call.answer(prm)
        prm.statusCode = 200
        call.answer(prm)
        self.t_200 = time.monotonic()

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.host.emit("phase", endpoint_id=self.id, phase=phase)

    def _ms(self, t: float | None) -> float | None:
        if t is None or self.t_invite is None:
            return None
        return round((t - self.t_invite) * 1000.0, 3)

    # ------------------------------------------------------------ callbacks
    def on_invite_response(self, code: int, reason: str) -> None:
        if self.t_confirmed is not None:
            return  # a re-INVITE, not call setup
        if code in self.seen_codes:
            return  # retransmitted or repeated response
        self.seen_codes.add(code)
        now = time.monotonic()
        if code == 100:
            self.t_trying = now
        elif code in (180, 183) and self.t_ringing is None:
            self.t_ringing = now
            self.set_phase("RINGING")
        elif 200 <= code < 300:
            self.t_200 = now
            self.set_phase("NEGOTIATING")
        self.host.emit(
            "call_progress", endpoint_id=self.id, code=code, reason=reason,
            ms_since_invite=self._ms(now),
        )  # fmt: skip

    def on_call_state(self, ci: pj.CallInfo) -> None:
        if ci.state == pj.PJSIP_INV_STATE_CONNECTING and self.role == "caller":
            # the 2xx does not always reach onCallTsxState; CONNECTING means 2xx received
            self.on_invite_response(ci.lastStatusCode or 200, ci.lastReason or "OK")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.t_confirmed is None:
            self.t_confirmed = time.monotonic()
            self.next_sample = self.t_confirmed + 1.0
            self.set_phase("INCALL")
            codec = None
            try:
                codec = self.call.getStreamInfo(0).codecName if self.call else None
            except pj.Error:
                pass
            caller = self.role == "caller"
            self.host.emit(
                "call_established", endpoint_id=self.id, codec=codec,
                time_to_trying_ms=self._ms(self.t_trying) if caller else None,
                time_to_ringing_ms=self._ms(self.t_ringing) if caller else None,
                post_dial_delay_ms=self._ms(self.t_ringing) if caller else None,
                call_setup_ms=self._ms(self.t_200),
            )  # fmt: skip
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.end_code, self.end_reason = ci.lastStatusCode, ci.lastReason

    def final_sample(self, call: HostCall) -> None:
        if self.t_confirmed is not None and not self.final_done:
            self.final_done = True
            self.take_sample(call, final=True)

    # ------------------------------------------------------------ main loop
    def take_sample(self, call: HostCall, final: bool = False) -> None:
        # audio levels are not readable once the stream is being destroyed
        snap = read_snapshot(call, self.timing(), levels=not final, errors=(pj.Error,))
        self.rx_packets = snap["rx"]["pkt"]
        send, recv = self.sampler.sample(snap)
        for direction, metrics in (("send", send), ("recv", recv)):
            self.host.emit(
                "sample", endpoint_id=self.id, direction=direction, seq=self.seq[direction],
                metrics=metrics,
            )  # fmt: skip
            self.seq[direction] += 1

    def timing(self) -> dict[str, Any]:
        caller = self.role == "caller"
        now = time.monotonic()
        return {
            "time_to_register_ms": None, "registration_expires_s": None,  # direct mode
            "time_to_trying_ms": self._ms(self.t_trying) if caller else None,
            "time_to_ringing_ms": self._ms(self.t_ringing) if caller else None,
            "post_dial_delay_ms": self._ms(self.t_ringing) if caller else None,
            "call_setup_ms": self._ms(self.t_200), "first_rtp_ms": self.first_rtp_ms,
            "call_duration_s": now - self.t_confirmed if self.t_confirmed else None,
        }  # fmt: skip

    def tick(self, now: float) -> None:
        if self.finished:
            return
        call = self.call
        if call is None:
            if self.role == "receiver" and (self.stopped or now - self.started > WAIT_FOR_CALL_S):
                reason = "stopped before a call arrived" if self.stopped else "no INVITE arrived"
                self.finish("CALL_FAILED" if self.stopped else "TIMEOUT", reason, None)
            return
        if call.disconnected:
            self._finish_call()
            return
        if self.hangup_at is not None:
            if now - self.hangup_at > TEARDOWN_TIMEOUT_S:
                self.finish("TEARDOWN_ERROR", "call did not end after hangup", None)
            return
        if self.stopped:
            self.hangup("stopped")
        elif self.t_confirmed is None:
            if self.role == "caller" and now - self.started > SETUP_TIMEOUT_S:
                self.forced = "TIMEOUT"
                self.hangup("no answer")
            return
        elif self.role == "caller" and now - self.t_confirmed >= self.duration_s:
            self.hangup(None)
        elif (
            self.role == "receiver"
            and now - self.t_confirmed >= self.duration_s + RECEIVER_SAFETY_S
        ):
            self.forced = "TIMEOUT"
            self.hangup("caller did not hang up")
        elif self.first_rtp_ms is None and now >= self.next_rtp_poll:
            self.next_rtp_poll = now + FIRST_RTP_POLL_S
            self._poll_first_rtp(call, now)
        if self.t_confirmed is not None and now >= self.next_sample and self.hangup_at is None:
            self.next_sample += 1.0
            if self.next_sample < now:  # the loop stalled; do not burst to catch up
                self.next_sample = now + 1.0
            self.take_sample(call)

    def _poll_first_rtp(self, call: HostCall, now: float) -> None:
        try:
            if call.getStreamStat(0).rtcp.rxStat.pkt > 0 and self.t_confirmed is not None:
                self.first_rtp_ms = round((now - self.t_confirmed) * 1000.0, 3)
        except pj.Error:
            pass

    def hangup(self, why: str | None) -> None:
        if self.call is None or self.hangup_at is not None:
            return
        self.hangup_at = time.monotonic()
        self.set_phase("DISCONNECTING")
        if self.t_confirmed is not None and not self.final_done:
            self.final_done = True  # sample now: after hangup the stream may be gone
            try:
                self.take_sample(self.call)
            except pj.Error:
                pass
        try:
            self.call.hangup(pj.CallOpParam())
        except pj.Error as exc:
            if not self.call.disconnected:
                self.forced = "TEARDOWN_ERROR"
                self.end_reason = f"hangup failed: {exc.info()}"
                self.call.disconnected = True
        log.debug("hangup %s (%s)", self.id, why)

    def _finish_call(self) -> None:
        code, reason = self.end_code, self.end_reason or ""
        if self.t_confirmed is None:
            if self.stopped and self.role == "caller":
                reason = "stopped before answer"
            self.host.emit("call_failed", endpoint_id=self.id, code=code, reason=reason)
            outcome = self.forced or ("TIMEOUT" if code == 408 else "CALL_FAILED")
        else:
            duration = round(time.monotonic() - self.t_confirmed, 3)
            self.host.emit(
                "call_ended", endpoint_id=self.id, code=code, reason=reason, duration_s=duration
            )
            if self.forced:
                outcome = self.forced
            elif self.rx_packets <= 0 and self.first_rtp_ms is None:
                outcome, reason = "MEDIA_ERROR", "no RTP received"
            else:
                outcome = "SUCCESS"
        self.finish(outcome, reason, code)

    def finish(self, outcome: str, reason: str, code: int | None) -> None:
        if self.finished:
            return
        self.finished = True
        if self.phase != "CLOSED":
            self.set_phase("CLOSED")
        self.host.emit(
            "endpoint_finished", endpoint_id=self.id, outcome=outcome, reason=reason, sip_code=code
        )
        self.host.release(self)
