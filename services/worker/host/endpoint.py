"""The per-endpoint state machine of the host: register, call, sample, finish.

Everything here runs in the host's main thread: pjsua2 callbacks (sip)
fire inside ep.libHandleEvents() and only record facts; `Endpoint.tick`,
called from the same loop, acts on them: anything that creates or drops
pjsua2 objects (makeCall, answer after a delay, hangup, releasing
Call/Account) happens there, outside callbacks, as PJSUA2.md requires.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import pjsua2 as pj

from callmeter_vocabulary import GOOD_OUTCOMES, OUTCOMES, Outcome, Phase
from callmeter_vocabulary.sample import make

from ..callplan import CallPlan
from .context import HostContext
from .recording import Recording
from .register import Registration
from .scenario import Scenario
from .sip import HostAccount, HostCall
from .stream_stats import StreamSampler, read_snapshot

log = logging.getLogger("callmeter.host")
RECEIVER_SAFETY_S = 10.0  # receiver hangs up this long after duration_s if no BYE came
# A pattern's receiver between calls ends once past call_wait_s AND idle this long (a
# caller's calls come at most a few seconds apart while it has calls left).
RECEIVER_IDLE_S = 10.0
# SIP finals that mean "the offer/answer could not agree" (codecs, SRTP, SDP itself)
NEGOTIATION_CODES = (488, 606)
TEARDOWN_TIMEOUT_S = 40.0  # BYE/CANCEL retransmissions end by 32 s (Timer F/B)
FIRST_RTP_POLL_S = 0.02  # stat polling rate until the first RTP packet is seen
# How soon a tick must follow while a call is set up, torn down or recorded: that
# work has no instant of its own to wake for (Endpoint.wake_at).
FINE_WAIT_S = 0.01
# PJSIP holds an ended call's slot (4 a process) until it has wound the call up; on a
# busy host a pattern's next call can come first and makeCall refuses it (PJ_ETOOMANY,
# 43 of 320 calls at 32 calls/s in bench/cps.py). Such a call is tried again every
# CALL_SLOT_RETRY_S for up to CALL_SLOT_WAIT_S, then fails as before.
CALL_SLOT_RETRY_S = 0.05
CALL_SLOT_WAIT_S = 2.0
# per-call means in a call record: sample key -> record key
RECORD_QUALITY = {"mos": "mos", "loss_percent": "loss_pct", "jitter_ms": "jitter_ms"}


def call_slots_full(info: str) -> bool:
    """Whether makeCall was refused because the process has PJSUA_MAX_CALLS calls."""
    return "PJ_ETOOMANY" in info or "status=70010" in info


class Endpoint:
    """One start_endpoint command: its account, its calls, its outcome.

    A caller makes the calls its plan gives (one for the run, or call after call with a
    repeat or rate pattern) and reports a call_record for each; a receiver whose caller
    has a pattern takes call after call until call_wait_s. With a pattern, only the
    first call reports its phases and call events (the endpoint's timeline), every call
    its record: at tens of calls per second the event log carries one event per call.
    The endpoint ends with the most severe outcome of its calls.
    """

    def __init__(self, host: HostContext, cmd: dict[str, Any], codecs: list[str]) -> None:
        self.host = host
        self.id: str = cmd["endpoint_id"]
        self.role: str = cmd["role"]
        self.codecs = codecs
        self.duration_s = float(cmd["duration_s"])
        self.call_wait_s = float(cmd["call_wait_s"])  # receiver: no INVITE by then -> ends
        # receiver: and none before this unix time either (its caller went out late)
        self.first_call_by_t = 0.0
        self.target_uri: str | None = cmd.get("target_uri")
        self.username: str = cmd["username"]
        self.options: dict[str, Any] = cmd["options"]
        self.registration = (
            Registration(cmd["registrar"], cmd["account"], self.username)
            if cmd.get("registrar")
            else None
        )
        self.scenario_actions = cmd.get("scenario") or []
        self.scenario = Scenario(host, self.id, self.scenario_actions)
        self.recording = Recording(host, self.id, cmd.get("record_s"))
        self.plan = CallPlan(
            cmd.get("pattern") or {"kind": "single"},
            int(cmd.get("group_index", 0)),
            int(cmd.get("group_size", 1)),
            self.duration_s,
        )
        self.next_call: tuple[float, float] | None = None  # caller: (monotonic start, hold)
        self.slot_wait_until: float | None = None  # a call refused for a full host: until
        self.calls_from_t: float | None = cmd.get("calls_from_t")  # see EndpointConfig
        self.t_base = 0.0  # monotonic instant the plan's times count from
        self.hold_s = self.duration_s  # of the current call, from when it is answered
        self.detail = True  # phases and call events (the first call only with a pattern)
        self.held_trace: list[tuple[str, str]] = []  # a later call's SIP messages (hold_trace)
        self.call_seq = 0
        self.results: list[tuple[str, str, int | None]] = []  # (outcome, reason, code) a call
        self.t_invite_wall = 0.0
        self.quality: dict[str, dict[str, list[float]]] = {}
        self.contact_uri = ""  # set by start(): the transport's port is known only then
        self.sip_call_id: str | None = None
        self.account: HostAccount | None = None
        self.call: HostCall | None = None
        self.phase = ""
        self.t_invite = self.t_trying = self.t_ringing = self.t_200 = None
        self.t_confirmed: float | None = None
        self.codec: str | None = None
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
        self.ready = False  # registered (or direct mode): may call / be called
        self.t_ready = 0.0
        self.t_last_call = 0.0  # the end of the endpoint's last call (pattern)
        self.answer_at: list[tuple[float, int]] = []  # receiver: (when, status) still to send
        self.ending: tuple[str, str, int | None] | None = None  # outcome, waiting for unregister
        self.finished = False

    @property
    def transport(self) -> str:
        return (
            self.registration.registrar["transport"]
            if self.registration
            else (self.options["transport"])
        )

    def direct_uri(self) -> str:
        """sip:user@address:port[;transport=tcp|tls]: the address peers reach, on the
        port the transport really has."""
        transport = self.transport
        suffix = f";transport={transport}" if transport != "udp" else ""
        where = f"{self.host.advertised}:{self.host.listen_port(transport)}"
        return f"sip:{self.username}@{where}{suffix}"

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.set_phase(Phase.INITIALIZING)
        self.contact_uri = self.registration.aor if self.registration else self.direct_uri()
        cfg = self.host.account_config(self.contact_uri, self.transport, self.options)
        if self.registration is not None:
            self.registration.configure(cfg)
        account = HostAccount(self.host, self)
        account.create(cfg)  # raises pj.Error; the object is then never registered
        self.account = self.host.accounts[self.id] = account
        if self.registration is None:
            self.host.emit("endpoint_ready", endpoint_id=self.id, contact_uri=self.contact_uri)
            self.on_ready()

    def on_ready(self) -> None:
        """Registered (or direct mode): a receiver waits, a caller dials (from tick)."""
        self.ready, self.t_ready = True, time.monotonic()
        if self.role == "idle":
            return  # only present (registered) for the duration
        if self.role == "receiver":
            # pjsua builds the SDP answer before onIncomingCall runs, so a receiver's
            # codecs must be in place now; see Host.receiver_codecs for the sharing rule
            self.host.apply_codecs(self.host.receiver_codecs())
        else:
            # from the group's instant; an endpoint ready later than that (a slow host
            # start) shifts its own calls rather than losing them
            now = self.t_ready
            start = now if self.calls_from_t is None else now + self.calls_from_t - time.time()
            self.t_base = max(now, start)
            self._plan_next(0.0)
            if self.next_call is not None and self.next_call[0] <= self.t_ready:
                self.place_call()

    def first_call_overdue(self, now: float) -> bool:
        """A receiver with no call yet has waited long enough: call_wait_s from being
        ready, and past the deadline its caller's dispatch set (wait_until), whichever
        is later; a caller's host may start long after its receiver was ready."""
        return now - self.t_ready > self.call_wait_s and time.time() > self.first_call_by_t

    def calls_over(self, now: float) -> bool:
        """A pattern's receiver, between calls: are its caller's calls over? Past
        call_wait_s from being ready, and idle RECEIVER_IDLE_S since its last call: a
        caller that started late (a slow host start on a loaded machine shifts its
        calls) still finds its receiver registered and free for its last calls, where
        ending on call_wait_s alone answered them 486 (ending) and then 404 (gone)."""
        return now - self.t_ready > self.call_wait_s and now - self.t_last_call > RECEIVER_IDLE_S

    def _plan_next(self, not_before: float) -> None:
        """The caller's next call, `not_before` seconds after t_base or later."""
        nxt = self.plan.next_call(not_before)
        self.next_call = None if nxt is None else (self.t_base + nxt[0], nxt[1])

    def place_call(self) -> None:
        assert self.next_call is not None
        first_try = self.slot_wait_until is None
        if first_try:
            self.slot_wait_until = time.monotonic() + CALL_SLOT_WAIT_S
            self.call_seq += 1
        self.hold_s, self.next_call = self.next_call[1], None
        self.host.apply_codecs(self.codecs)  # the SDP offer is built inside makeCall
        call = HostCall(self.host, self.account, self, pj.PJSUA_INVALID_ID)
        self.call = call
        self.t_invite, self.t_invite_wall = time.monotonic(), time.time()
        if first_try:
            self.set_phase(Phase.CALLING)
            self.emit_detail("call_attempted", target_uri=self.target_uri)
        try:
            call.makeCall(self.target_uri, pj.CallOpParam(True))
        except pj.Error as exc:
            self.call = None  # pjsua never allocated the call; nothing to release
            if call_slots_full(exc.info()) and time.monotonic() < (self.slot_wait_until or 0):
                self.next_call = (time.monotonic() + CALL_SLOT_RETRY_S, self.hold_s)
                return  # an ended call of this host still holds its slot: again shortly
            self.slot_wait_until = None
            outcome = Outcome.OSERROR if "address" in exc.info().lower() else Outcome.CALL_FAILED
            self.emit_detail("call_failed", code=None, reason=exc.info())
            self._call_done(outcome, f"makeCall failed: {exc.info()}", None)
            return
        finally:
            self.host.apply_codecs(self.host.receiver_codecs())
        self.slot_wait_until = None
        call.media_transport = self.host.claim_media_transport()  # made inside makeCall
        self.sip_call_id = self.host.track_call_id(call, self.id)

    def busy(self) -> bool:
        """A receiver that cannot take an INVITE now (one call at a time)."""
        if self.finished or self.ending is not None or self.call is None:
            return self.finished or self.ending is not None
        # with a pattern, a call that ended but is not wound up yet is no obstacle
        return not (self.plan.multi and self.call.disconnected)

    def attach_incoming(self, call: HostCall) -> None:
        """Receiver: 180 after answer_delay_s, 200 ring_time_s later (0/0: at once)."""
        if self.call is not None:  # the previous call ended; the tick did not see it yet
            self._finish_call(in_callback=True)
        self.call_seq += 1
        self.call, call.endpoint = call, self
        self.t_invite = time.monotonic()
        self.sip_call_id = self.host.track_call_id(call, self.id)
        delay, ring = self.options["answer_delay_s"], self.options["ring_time_s"]
        # answered from tick, never inside onIncomingCall (see Host.reject)
        self.answer_at = [(self.t_invite + delay, 180), (self.t_invite + delay + ring, 200)]

    def _answer_due(self, now: float) -> None:
        while self.answer_at and self.answer_at[0][0] <= now and self.call is not None:
            _, code = self.answer_at.pop(0)
            prm = pj.CallOpParam()
            prm.statusCode = code
            try:
                self.call.answer(prm)
            except pj.Error as exc:  # the caller gave up meanwhile (CANCEL, BYE)
                log.info("%s: answer %d failed: %s", self.id, code, exc.info())
                self.answer_at = []
                return
            if code == 200 and self.call.media_transport is None:
                # an INVITE without SDP: pjsua made the media for our offer just now
                self.call.media_transport = self.host.claim_media_transport()
            if code == 180:
                self.set_phase(Phase.RINGING)
            else:
                self.t_200 = time.monotonic()

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            if self.detail or phase == Phase.CLOSED:
                self.host.emit("phase", endpoint_id=self.id, phase=phase)

    def emit_detail(self, ev: str, **fields: Any) -> None:
        """A call event of the endpoint's timeline (with a pattern: its first call only)."""
        if self.detail:
            self.host.emit(ev, endpoint_id=self.id, **fields)

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
            self.set_phase(Phase.RINGING)
        elif 200 <= code < 300:
            self.t_200 = now
            self.set_phase(Phase.NEGOTIATING)
        self.emit_detail(
            "call_progress",
            code=code,
            reason=reason,
            ms_since_invite=self._ms(now),
        )

    def on_call_state(self, ci: pj.CallInfo) -> None:
        if ci.state == pj.PJSIP_INV_STATE_CONNECTING and self.role == "caller":
            # the 2xx does not always reach onCallTsxState; CONNECTING means 2xx received
            self.on_invite_response(ci.lastStatusCode or 200, ci.lastReason or "OK")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.t_confirmed is None:
            self.t_confirmed = time.monotonic()
            self.next_sample = self.t_confirmed + 1.0
            self.set_phase(Phase.INCALL)
            codec = None
            try:
                codec = self.call.getStreamInfo(0).codecName if self.call else None
            except pj.Error:
                pass
            timing = self.timing()
            keys = ("time_to_trying_ms", "time_to_ringing_ms", "post_dial_delay_ms")
            self.codec = codec
            self.emit_detail(
                "call_established",
                codec=codec,
                call_setup_ms=timing["call_setup_ms"],
                **{k: timing[k] for k in keys},
            )
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.end_code, self.end_reason = ci.lastStatusCode, ci.lastReason

    def final_sample(self, call: HostCall, ending: bool) -> None:
        if not ending and self.hangup_at is None and not call.disconnected:
            return  # a re-INVITE replaced the stream; the call goes on (see StreamSampler)
        if self.t_confirmed is not None and not self.final_done:
            self.final_done = True
            self.take_sample(call, final=True)

    def on_dtmf(self, method: int, digit: str) -> None:
        self.scenario.on_dtmf(method, digit)

    # ------------------------------------------------------------ main loop
    def take_sample(self, call: HostCall, final: bool = False) -> None:
        # audio levels are not readable once the stream is being destroyed
        snap = read_snapshot(call, self.timing(), levels=not final, errors=(pj.Error,))
        snap["tx"]["dropped"] = self.host.tx_dropped(call.media_transport)
        self.rx_packets = max(self.rx_packets, snap["rx"]["pkt"])
        send, recv = self.sampler.sample(snap)
        ts = datetime.now(UTC)
        for direction, metrics in (("send", send), ("recv", recv)):
            sums = self.quality.setdefault(direction, {})
            for key in RECORD_QUALITY:
                if metrics.get(key) is not None:
                    sums.setdefault(key, []).append(float(metrics[key]))
            sample = make(self.id, direction, self.seq[direction], metrics, ts)
            self.host.emit("sample", endpoint_id=self.id, sample=sample)
            self.seq[direction] += 1

    def timing(self) -> dict[str, Any]:
        caller, reg = self.role == "caller", self.registration
        now = time.monotonic()
        return {
            "time_to_register_ms": reg.time_to_register_ms if reg else None,
            "registration_expires_s": reg.expires_s if reg else None,
            "time_to_trying_ms": self._ms(self.t_trying) if caller else None,
            "time_to_ringing_ms": self._ms(self.t_ringing) if caller else None,
            "post_dial_delay_ms": self._ms(self.t_ringing) if caller else None,
            "call_setup_ms": self._ms(self.t_200),
            "first_rtp_ms": self.first_rtp_ms,
            "call_duration_s": now - self.t_confirmed if self.t_confirmed else None,
        }

    def wake_at(self, now: float) -> float:
        """The latest monotonic instant the next tick may come if no event comes first.

        A pjsip callback ends the host's wait at once, and every endpoint is ticked
        after it, so this names only what tick does on the clock: a caller's next call,
        a call's hangup, samples, scenario steps and first-RTP polls, and FINE_WAIT_S
        while a call is set up or torn down, records, or a hangup command is to be
        carried out. inf when only an event or a timeout of seconds can move it (the
        host caps its wait).
        """
        call = self.call
        if self.finished or self.ending is not None:
            return math.inf
        if self.stopped:
            return now + FINE_WAIT_S
        if call is None:
            if self.role == "caller" and self.ready and self.next_call is not None:
                return self.next_call[0]
            return math.inf
        if (
            call.disconnected
            or self.hangup_at is not None
            or self.t_confirmed is None
            or self.answer_at
            or not self.recording.done
        ):
            return now + FINE_WAIT_S
        if self.role == "caller":
            end = self.t_confirmed + self.hold_s
        else:
            end = self.t_confirmed + self.duration_s + RECEIVER_SAFETY_S
        wake = min(end, self.next_sample, self.t_confirmed + self.scenario.next_at_s())
        if self.first_rtp_ms is None:
            wake = min(wake, self.next_rtp_poll)
        return wake

    def tick(self, now: float) -> None:
        if self.finished:
            return
        if self.ending is not None:  # waiting for the answer to REGISTER Expires: 0
            if self.registration is None or self.registration.settled(now):
                self.finish(*self.ending)
            return
        if self.registration is not None and not self._tick_registration(now):
            return
        call = self.call
        if self.role == "idle" and self.ready:
            if self.stopped or now - self.t_ready >= self.duration_s:
                self.end(Outcome.SUCCESS, "stopped" if self.stopped else "", None)
            return
        if call is None:
            if self.role == "caller" and self.ready:
                if self.stopped or self.next_call is None:
                    self._end_calls()
                elif now >= self.next_call[0]:
                    self.place_call()
                return
            if self.role == "receiver" and self.results:  # a pattern's receiver, between calls
                if self.stopped or self.calls_over(now):
                    self._end_calls()
                return
            if self.role == "receiver" and self.stopped:
                self.end(Outcome.CALL_FAILED, "stopped before a call arrived", None)
            elif self.role == "receiver" and self.ready and self.first_call_overdue(now):
                reason = f"no incoming call within {self.call_wait_s:g} s of being ready"
                if self.first_call_by_t:
                    reason += " and of its caller going out"
                self.end("NO_INCOMING_CALL", reason, None)
            elif self.stopped and not self.ready:
                self.end(Outcome.CALL_FAILED, "stopped before registration", None)
            return
        if call.disconnected:
            self._finish_call()
            return
        if self.hangup_at is not None:
            if now - self.hangup_at > TEARDOWN_TIMEOUT_S:
                self.end(Outcome.TEARDOWN_ERROR, "call did not end after hangup", None)
            return
        if self.answer_at:
            self._answer_due(now)
        if self.stopped:
            self.hangup("stopped")
        elif self.t_confirmed is None:
            if self.role == "caller" and now - self.t_invite > self.options["invite_timeout_s"]:
                self.forced = Outcome.TIMEOUT
                self.hangup("no answer")  # CANCEL
            return
        elif self.role == "caller" and now - self.t_confirmed >= self.hold_s:
            self.hangup(None)
        elif (
            self.role == "receiver"
            and now - self.t_confirmed >= self.duration_s + RECEIVER_SAFETY_S
        ):
            self.forced = Outcome.TIMEOUT
            self.hangup("caller did not hang up")
        else:
            self.scenario.tick(call, now - self.t_confirmed, self.codecs)
            self.recording.tick(call, now)
            if self.first_rtp_ms is None and now >= self.next_rtp_poll:
                self.next_rtp_poll = now + FIRST_RTP_POLL_S
                self._poll_first_rtp(call)
        if self.t_confirmed is not None and now >= self.next_sample and self.hangup_at is None:
            self.next_sample += 1.0
            if self.next_sample < now:  # the loop stalled; do not burst to catch up
                self.next_sample = now + 1.0
            self.take_sample(call)

    def _tick_registration(self, now: float) -> bool:
        """Report registration results; False while the endpoint must not go on."""
        reg = self.registration
        reg.check_timeout(now)
        for ev, fields in reg.new_reports:
            self.host.emit(ev, endpoint_id=self.id, **fields)
        reg.new_reports.clear()
        if reg.state == "failed":
            self.end(Outcome.REGISTRATION_FAILED, f"{reg.code} {reg.reason}".strip(), reg.code)
            return False
        if reg.state == "registered" and not self.ready:
            self.on_ready()
        return self.ready

    def _poll_first_rtp(self, call: HostCall) -> None:
        try:
            if call.getStreamStat(0).rtcp.rxStat.pkt > 0 and self.t_confirmed is not None:
                # the clock now, not the tick's start: a callback during this tick may have
                # confirmed the call after it began (CI stored -7.47 ms from that)
                self.first_rtp_ms = round((time.monotonic() - self.t_confirmed) * 1000.0, 3)
        except pj.Error:
            pass

    def hangup(self, why: str | None) -> None:
        if self.call is None or self.hangup_at is not None:
            return
        self.hangup_at = time.monotonic()
        self.set_phase(Phase.DISCONNECTING)
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
                self.forced = Outcome.TEARDOWN_ERROR
                self.end_reason = f"hangup failed: {exc.info()}"
                self.call.disconnected = True
        log.debug("hangup %s (%s)", self.id, why)

    def _finish_call(self, in_callback: bool = False) -> None:
        code, reason = self.end_code, self.end_reason or ""
        if self.t_confirmed is None:
            if self.stopped and self.role == "caller":
                reason = "stopped before answer"
            elif self.forced == Outcome.TIMEOUT:
                reason = f"no answer within {self.options['invite_timeout_s']} s (CANCEL sent)"
            self.emit_detail("call_failed", code=code, reason=reason)
            outcome = self.forced or (
                Outcome.TIMEOUT
                if code == 408
                else Outcome.NEGOTIATION_FAILED
                if code in NEGOTIATION_CODES
                else Outcome.CALL_FAILED
            )
        else:
            duration = round(time.monotonic() - self.t_confirmed, 3)
            self.emit_detail("call_ended", code=code, reason=reason, duration_s=duration)
            if self.forced:
                outcome = self.forced
            elif self.rx_packets <= 0 and self.first_rtp_ms is None:
                outcome, reason = Outcome.MEDIA_ERROR, "no RTP received"
            elif self.registration is not None and self.registration.refresh_failures:
                outcome, reason = Outcome.COMPLETED_WITH_WARNINGS, "a registration refresh failed"
            else:
                outcome = Outcome.SUCCESS
        self._call_done(outcome, reason, code, in_callback)

    def _call_done(
        self, outcome: str, reason: str, code: int | None, in_callback: bool = False
    ) -> None:
        """One call is over: record it; then the next one, or the endpoint's end."""
        now = time.monotonic()
        self.t_last_call = now
        self.results.append((outcome, reason, code))
        self.release_trace(outcome)
        if self.role == "caller":
            self._emit_record(outcome, reason, code, now)
        if not self.plan.multi or self.stopped:
            self._end_calls()
            return
        if not in_callback:  # stopping a recorder drops pjsua2 objects: never in a callback
            self.recording.stop(now)  # a sampled receiver records its first call only
        if self.call is not None and not self.call.disconnected:
            self.host.rejected.append(self.call)  # keep it alive until PJSIP drops it
        self.host.release_call(self.id, self.sip_call_id)
        self._reset_call()
        if self.role == "caller":
            started = (self.t_invite or now) - self.t_base
            self._plan_next(self.plan.after_call(started, now - self.t_base))

    def hold_trace(self, direction: str, text: str) -> bool:
        """Keep a SIP message of a call after the first (a pattern) until the call's
        outcome is known (release_trace); False: the host emits it now. At tens of
        calls per second every message of every call was most of what the worker
        published and ingest stored; the first call and the failed ones say what a
        trace is read for."""
        if self.detail or self.call is None:
            return False
        self.held_trace.append((direction, text))
        return True

    def release_trace(self, outcome: str) -> None:
        """The call's held SIP messages: emitted if it did not succeed, else dropped."""
        held, self.held_trace = self.held_trace, []
        if outcome != Outcome.SUCCESS:
            for direction, text in held:
                self.host.emit("sip_message", endpoint_id=self.id, direction=direction, text=text)

    def _emit_record(self, outcome: str, reason: str, code: int | None, now: float) -> None:
        timing = self.timing()
        answered = self.t_confirmed is not None
        quality = {
            direction: {
                name: (round(sum(v) / len(v), 4) if (v := sums.get(key)) else None)
                for key, name in RECORD_QUALITY.items()
            }
            for direction, sums in self.quality.items()
        }
        self.host.emit(
            "call_record",
            endpoint_id=self.id,
            seq=self.call_seq,
            attempted_t=self.t_invite_wall,
            outcome=outcome,
            code=code,
            reason=reason,
            codec=self.codec,
            time_to_trying_ms=timing["time_to_trying_ms"],
            time_to_ringing_ms=timing["time_to_ringing_ms"],
            post_dial_delay_ms=timing["post_dial_delay_ms"],
            call_setup_ms=timing["call_setup_ms"],
            answered_t=self.t_invite_wall + (self.t_confirmed - self.t_invite)
            if answered and self.t_invite is not None
            else None,
            duration_s=round(now - self.t_confirmed, 3) if self.t_confirmed else None,
            quality=quality,
        )

    def _reset_call(self) -> None:
        """Forget the call that ended (pattern: the endpoint goes on to the next)."""
        self.detail = False
        self.call, self.sip_call_id, self.codec = None, None, None
        self.t_invite = self.t_trying = self.t_ringing = self.t_200 = None
        self.t_confirmed = self.first_rtp_ms = None
        self.seen_codes, self.end_code, self.end_reason = set(), None, ""
        self.sampler, self.quality = StreamSampler(), {}
        self.rx_packets, self.final_done = 0, False
        self.hangup_at, self.forced, self.answer_at = None, None, []
        self.scenario = Scenario(self.host, self.id, self.scenario_actions)

    def _end_calls(self) -> None:
        """The endpoint's outcome: the most severe of its calls' outcomes."""
        if not self.results:
            if self.role == "caller" and not self.stopped:
                # a rate can give an endpoint no arrival before the run's end
                self.end(Outcome.SUCCESS, "the pattern gave this endpoint no call", None)
            else:
                why = "stopped before a call" + (" arrived" if self.role == "receiver" else "")
                self.end(Outcome.CALL_FAILED, why, None)
            return
        if len(self.results) == 1:
            self.end(*self.results[0])
            return
        worst = max(self.results, key=lambda r: OUTCOMES.index(Outcome(r[0])))
        bad = [r for r in self.results if r[0] not in GOOD_OUTCOMES]
        reason = f"{len(self.results)} calls"
        if bad:
            reason = f"{len(bad)} of {len(self.results)} calls failed; first: {bad[0][1]}"
        if self.plan.skipped:
            reason += f"; {self.plan.skipped} arrivals skipped (endpoint busy or not ready)"
        self.end(worst[0], reason, bad[0][2] if bad else None)

    def end(self, outcome: str, reason: str, code: int | None) -> None:
        """The outcome is known: de-register first (registrar mode), then finish."""
        if self.ending is not None or self.finished:
            return
        self.ending = (outcome, reason, code)
        if self.call is not None and not self.call.disconnected:
            self.host.rejected.append(self.call)  # keep it alive until PJSIP drops it
        self.call = None
        if self.registration is not None and self.account is not None:
            self.registration.unregister(self.account)
        self.tick(time.monotonic())

    def finish(self, outcome: str, reason: str, code: int | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.recording.stop(time.monotonic())  # reported before the endpoint's end
        if self.phase != Phase.CLOSED:
            self.set_phase(Phase.CLOSED)
        self.host.emit(
            "endpoint_finished", endpoint_id=self.id, outcome=outcome, reason=reason, sip_code=code
        )
        self.call = self.account = None  # the host drops the pjsua2 objects themselves
        self.host.release(self.id, self.sip_call_id)
