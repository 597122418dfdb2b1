"""Endpoint-host subprocess: one pjsua2 Endpoint, at most 4 calls / 8 accounts.

    python -m callmeter_worker.host --sip-port P --rtp-port R --rtp-port-range N
        [--host-id ID] [--bind 127.0.0.1] [--clock-rate 8000]
        [--drop-tx-pct 0] [--drop-rx-pct 0] [--trace-sip] [--log-level 2]

Commands arrive on stdin and events leave on stdout as JSON lines (see
callmeter_worker.protocol). Logs go to stderr. pjsua2 runs with no worker threads and is
driven by ep.libHandleEvents() in this (main) thread, as PJSUA2.md requires: waiting
until an endpoint's clock asks, at most MAX_POLL_MS (a SIP event ends the wait at once;
see poll_ms).

Process-wide settings (PJSIP limits, not choices): codec priorities,
conference clock rate and RTP drop simulation belong to the library, not
to a call. Codec priorities are applied per endpoint right before its
INVITE is sent (caller) or when it is started (receiver: the SDP answer is
built before onIncomingCall runs), so endpoints with different codec lists
in one host can race; drop percentages and clock rate are fixed at start
(flags), and a start_endpoint asking for other drop values is rejected.
The supervisor should group endpoints with equal settings into one host.
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import math
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import pjsua2 as pj

from callmeter_vocabulary import Outcome

from .. import protocol as proto
from .args import parse_args, pjsip_drop_pct
from .audio import resolve_codecs, write_tone_wav
from .endpoint import FINE_WAIT_S, Endpoint
from .keybudget import KeyBudget
from .sip import HostCall, SipLogWriter
from .sipfilter import drop_oversized
from .transport import Transports

log = logging.getLogger("callmeter.host")
MAX_CALLS, MAX_ACCOUNTS = 4, 8  # PJSUA_MAX_CALLS / PJSUA_MAX_ACC of this wheel
# An INVITE the host turns away keeps its call slot this long before the rejection is
# sent. pjsua creates an incoming call's media sockets before the application sees it,
# and a closed socket's ioqueue key comes back only 500 ms later
# (PJ_IOQUEUE_KEY_FREE_DELAY): rejecting at once let a burst of INVITEs churn through
# the 64 keys and abort the process. Held slots make pjsua itself answer further
# INVITEs 486 before any media exists, so at most MAX_CALLS calls' sockets are made per
# hold, whatever the rate of INVITEs.
REJECT_HOLD_S = 0.5
# How long one libHandleEvents may wait for an event. A pjsip event ends the wait at
# once; otherwise the loop wakes when an endpoint's clock asks (Endpoint.wake_at: the
# next call, a hangup, a sample, a scenario step, or FINE_WAIT_S around setup and
# teardown), and at least every MAX_POLL_MS for commands, timeouts of seconds and the
# callbacks pjsua2 posts from its media threads (mainThreadOnly runs them here: a DTMF
# digit received reaches its endpoint, and its event is stamped, up to MAX_POLL_MS after
# PJSIP decoded it, unless a SIP event comes first).
# Ticking every 10 ms through each call took most of a busy host's Python time: in
# bench/cps.py at 32 calls/s, 28 caller hosts' main threads used 14.1 s of CPU during
# the run with that, 9.3 s without. Waking every 50 ms with nothing due then cost an
# idle host's main thread 0.24 % of a core, every 200 ms 0.085 % (40 idle hosts, 10 s:
# 0.097 and 0.034 of a core; a pair run at 96 calls/s has 144 hosts, idle until the
# callers' lead is over and between calls).
BUSY_POLL_MS = round(FINE_WAIT_S * 1000)
MAX_POLL_MS = 200
SRTP = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}
PRACK = {
    "off": pj.PJSUA_100REL_NOT_USED,
    "supported": pj.PJSUA_100REL_OPTIONAL,
    "required": pj.PJSUA_100REL_MANDATORY,
}
TIMER = {
    "off": pj.PJSUA_SIP_TIMER_INACTIVE,
    "optional": pj.PJSUA_SIP_TIMER_OPTIONAL,
    "required": pj.PJSUA_SIP_TIMER_REQUIRED,
    "always": pj.PJSUA_SIP_TIMER_ALWAYS,
}


class HostEndpoint(pj.Endpoint):
    """The library's Endpoint, telling the host when a SIP connection's transport is
    connected or destroyed (keybudget.py)."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host

    def onTransportState(self, prm: pj.OnTransportStateParam) -> None:  # noqa: N802
        self.host.transport_state(int(prm.hnd), prm.state)


class Host:
    def __init__(self, args: argparse.Namespace, out_fd: int) -> None:
        self.args, self.out_fd = args, out_fd
        self.bind, self.sip_port = args.bind, args.sip_port
        self.advertised = args.public_address or args.bind  # what peers reach us at
        self.record_dir = args.record_dir or tempfile.gettempdir()
        self.endpoints: dict[str, Endpoint] = {}
        self.accounts: dict[str, Any] = {}  # endpoint_id -> live HostAccount
        self.rejected: list[HostCall] = []  # turned-away calls, kept until DISCONNECTED
        self.to_reject: list[tuple[float, HostCall, int]] = []  # (when, call, status) to send
        # SIP Call-ID -> endpoint ids in this host (two when caller and callee share it)
        self.callids: dict[str, set[str]] = {}
        self.logq: collections.deque = collections.deque(maxlen=10000)
        self.codecs_applied: list[str] | None = None
        self.running = True
        self.inbuf = b""
        self.connection_keys = KeyBudget()  # ioqueue keys held by SIP connections
        self.listeners_closed = False

    # ------------------------------------------------------------ library
    def start_library(self) -> None:
        a = self.args
        self.ep = HostEndpoint(self)
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = MAX_CALLS
        cfg.uaConfig.userAgent = f"CallMeter/{a.host_id or 'host'}"
        med = cfg.medConfig
        med.noVad = True  # VAD with a tone source would still cut packets on pauses
        med.clockRate = med.sndClockRate = a.clock_rate
        med.ecTailLen = 0  # no echo canceller: it only costs CPU here
        med.txDropPct, med.rxDropPct = (
            pjsip_drop_pct(a.drop_tx_pct),
            pjsip_drop_pct(a.drop_rx_pct),
        )
        lc = cfg.logConfig
        # level 4 names each media transport as it is made; with simulated tx loss,
        # level 5 reports each packet dropped (SipLogWriter counts them per transport)
        level = max(a.log_level, 4 if a.trace_sip else 0, 5 if a.drop_tx_pct else 0)
        self.writer = SipLogWriter(self.logq, a.trace_sip, a.log_level)
        lc.writer, lc.level, lc.consoleLevel = self.writer, level, level
        lc.msgLogging = bool(a.trace_sip)
        lc.decor = pj.PJ_LOG_HAS_SENDER  # which media transport dropped a packet
        self.ep.libInit(cfg)
        self.transports = Transports(
            self.ep, a.bind, a.sip_port, a.tls_cert, a.tls_key, a.public_address
        )
        self.transport_id = self.transports.get("udp")
        drop_oversized(a.bind, a.sip_port)  # pjsip would parse them cut at 4,000 bytes
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self.codec_ids = [c.codecId for c in self.ep.codecEnum2()]
        self.player = pj.AudioMediaPlayer()
        if a.audio:  # the group's WAV (the supervisor owns the file); the bridge resamples it
            self.player.createPlayer(a.audio, 0)  # options 0: loop forever
        else:
            tone_path = write_tone_wav(a.clock_rate)
            self.player.createPlayer(tone_path, 0)
            # the player keeps its fd open and rewinds it; unlinking now means a killed
            # host leaves no temp file behind
            os.unlink(tone_path)
        self.playback = self.ep.audDevManager().getPlaybackDevMedia()
        self.emit("host_ready", sip_port=a.sip_port)

    def listen_port(self, kind: str) -> int:
        return self.transports.listen_port(kind)

    def transport_state(self, handle: int, state: int) -> None:
        """A SIP connection's transport changed state (inside libHandleEvents, possibly
        while pjsip accepts a queue of connections): count its ioqueue key, and close
        the listeners at once when the connections hold their budget of keys."""
        if state == pj.PJSIP_TP_STATE_CONNECTED:
            self.connection_keys.connected(handle)
        elif state == pj.PJSIP_TP_STATE_DESTROY:
            self.connection_keys.destroyed(handle, time.monotonic())
        self.gate_listeners(time.monotonic())

    def gate_listeners(self, now: float) -> None:
        """Listeners closed to new connections while connections hold the key budget,
        open again once enough keys came back (the main loop asks every turn)."""
        full = self.connection_keys.full(now)
        if full and not self.listeners_closed:
            log.warning(
                "SIP connections hold %d ioqueue keys: new TCP/TLS connections are refused"
                " until keys come back (each closed one's after 500 ms)",
                self.connection_keys.held(now),
            )
        self.listeners_closed = full
        self.transports.close_listeners(full)

    def account_config(
        self, contact_uri: str, transport: str, opts: dict[str, Any]
    ) -> pj.AccountConfig:
        """Direct-mode account of one endpoint; Registration.configure adds registrar mode."""
        cfg = pj.AccountConfig()
        cfg.idUri = contact_uri
        cfg.sipConfig.transportId = self.transports.get(transport)
        med = cfg.mediaConfig
        mt = med.transportConfig
        mt.port, mt.portRange, mt.boundAddress = (
            self.args.rtp_port,
            self.args.rtp_port_range,
            self.bind,
        )
        if self.advertised != self.bind:
            mt.publicAddress = self.advertised  # SDP c= and o=
        if opts["dscp_rtp"] is not None:
            mt.qosType = pj.PJ_QOS_TYPE_VOICE
            mt.qosParams.flags = pj.PJ_QOS_PARAM_HAS_DSCP
            mt.qosParams.dscp_val = int(opts["dscp_rtp"])
        med.srtpUse = SRTP[opts["srtp"]]
        med.srtpSecureSignaling = 0  # SDES keys over plain UDP/TCP: a test bed, not a product
        call = cfg.callConfig
        call.prackUse = PRACK[opts["prack"]]
        call.timerUse = TIMER[opts["session_timer"]]
        call.timerSessExpiresSec = int(opts["session_expires_s"])
        call.timerMinSESec = int(opts["min_se_s"])
        return cfg

    def resolve_codecs(self, names: list[str]) -> list[str]:
        return resolve_codecs(names, self.codec_ids)

    def receiver_codecs(self) -> list[str]:
        """Union of the live receivers' codec lists, in start order.

        Priorities are process-wide and the answer is built from them when an
        INVITE arrives, so receivers sharing a host answer with the union: a
        receiver may then accept a codec listed only by its neighbour (rather
        than reject with 488). Group receivers by codec list to avoid that.
        """
        ids: list[str] = []
        for e in self.endpoints.values():
            if e.role == "receiver" and not e.finished:
                ids += [c for c in e.codecs if c not in ids]
        return ids

    def apply_codecs(self, ids: list[str]) -> None:
        """Process-wide priorities: listed codecs in order, every other codec disabled."""
        if not ids or ids == self.codecs_applied:
            return
        for cid in self.codec_ids:
            prio = 255 - ids.index(cid) if cid in ids else 0
            self.ep.codecSetPriority(cid, prio)
        self.codecs_applied = list(ids)

    def connect_audio(self, am: pj.AudioMedia) -> None:
        self.player.startTransmit(am)  # tone -> call (RTP out)
        am.startTransmit(self.playback)  # call -> null device, so the jitter buffer is drained

    def track_call_id(self, call: HostCall, endpoint_id: str) -> str | None:
        try:
            cid = call.getInfo().callIdString
        except pj.Error:
            return None
        self.callids.setdefault(cid, set()).add(endpoint_id)
        return cid

    def reject(self, call: HostCall, code: int) -> None:
        """Turn an incoming call away REJECT_HOLD_S from now, from the main loop.

        Never from inside onIncomingCall: a final answer there to an INVITE without SDP
        ends the call at once, and pjsua2 then frees the call's cloned request a second
        time (pjsip_rx_data_free_cloned: Assertion 'rdata' failed: the process aborts).
        """
        self.to_reject.append((time.monotonic() + REJECT_HOLD_S, call, code))
        self.rejected.append(call)

    def send_rejections(self, now: float) -> None:
        due = [r for r in self.to_reject if r[0] <= now]
        if not due:
            return
        self.to_reject = [r for r in self.to_reject if r[0] > now]
        for _, call, code in due:
            if call.disconnected:
                continue  # the caller gave up first (CANCEL)
            prm = pj.CallOpParam()
            prm.statusCode = code
            try:
                call.answer(prm)
            except pj.Error as exc:
                log.warning("rejecting an incoming call (%d): %s", code, exc.info())

    def poll_ms(self, now: float) -> int:
        """How long the next libHandleEvents may wait: BUSY_POLL_MS while calls wait to
        be rejected or listeners to open again, else until the earliest endpoint's
        wake_at, at most MAX_POLL_MS."""
        if self.rejected or self.to_reject or self.listeners_closed:
            return BUSY_POLL_MS
        return poll_wait_ms(now, (e.wake_at(now) for e in self.endpoints.values()))

    def live_calls(self) -> int:
        n = sum(1 for e in self.endpoints.values() if e.call is not None and not e.finished)
        n += sum(
            1
            for e in self.endpoints.values()
            if e.role == "caller" and not e.finished and e.call is None
        )
        return n + len(self.rejected)

    def claim_media_transport(self) -> str | None:
        return self.writer.claim_media_transport()

    def tx_dropped(self, media_transport: str | None) -> int:
        return self.writer.tx_dropped[media_transport] if media_transport else 0

    def release_call(self, endpoint_id: str, sip_call_id: str | None) -> None:
        """Forget that a call's Call-ID belongs to this endpoint (its call is over)."""
        owners = self.callids.get(sip_call_id or "")
        if owners is not None:
            owners.discard(endpoint_id)
            if not owners:
                self.callids.pop(sip_call_id or "", None)

    def release(self, endpoint_id: str, sip_call_id: str | None) -> None:
        """Drop an endpoint's pjsua2 objects (called from the main loop, never a callback)."""
        self.release_call(endpoint_id, sip_call_id)
        acc = self.accounts.pop(endpoint_id, None)
        if acc is not None:
            try:
                acc.shutdown()
            except pj.Error as exc:
                log.warning("account shutdown %s: %s", endpoint_id, exc.info())

    # ------------------------------------------------------------ protocol
    def emit(self, ev: str, **fields: Any) -> None:
        if self.out_fd < 0:
            return
        data = proto.encode(proto.event(ev, **fields))
        try:
            while data:
                data = data[os.write(self.out_fd, data) :]
        except OSError:  # parent gone (EPIPE): nobody to report to; wind down
            self.out_fd, self.running = -1, False

    def error(self, message: str, endpoint_id: str | None = None) -> None:
        self.emit("error", message=message, endpoint_id=endpoint_id)

    def read_commands(self) -> None:
        while select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 65536)
            if not chunk:  # parent closed stdin (or died): behave as shutdown
                self.running = False
                return
            self.inbuf += chunk
            while b"\n" in self.inbuf:
                line, self.inbuf = self.inbuf.split(b"\n", 1)
                if line.strip():
                    self.handle_line(line)
            if len(self.inbuf) > proto.MAX_LINE:
                self.inbuf = b""
                self.error("command line too long; discarded")

    def handle_line(self, line: bytes) -> None:
        try:
            cmd = proto.decode_line(line)
            if "op" not in cmd:
                raise proto.ProtocolError("expected a command (op)")
        except proto.ProtocolError as exc:
            self.error(f"bad command: {exc}")
            return
        if cmd["op"] == "shutdown":
            self.running = False
        elif cmd["op"] == "hangup":
            endpoint = self.endpoints.get(cmd["endpoint_id"])
            if endpoint is None or endpoint.finished:
                self.error("no such running endpoint", cmd["endpoint_id"])
            else:
                endpoint.stopped = True
        elif cmd["op"] == "wait_until":
            # (an endpoint that has finished has nothing left to wait for; no error: the
            # supervisor ends an endpoint its host reports an error for)
            endpoint = self.endpoints.get(cmd["endpoint_id"])
            if endpoint is not None:
                endpoint.first_call_by_t = max(endpoint.first_call_by_t, cmd["until_t"])
        else:
            self.start_endpoint(cmd)

    def start_endpoint(self, cmd: dict[str, Any]) -> None:
        eid, a = cmd["endpoint_id"], self.args
        if eid in self.endpoints:
            return self.error("duplicate endpoint_id", eid)
        if len(self.accounts) >= MAX_ACCOUNTS:  # a 9th Account.create aborts the process
            return self.error(f"host full: {MAX_ACCOUNTS} accounts in use", eid)
        if cmd["role"] == "caller" and self.live_calls() >= MAX_CALLS:
            return self.error(f"host full: {MAX_CALLS} calls in use", eid)
        if (cmd["drop_tx_pct"], cmd["drop_rx_pct"]) != (a.drop_tx_pct, a.drop_rx_pct):
            return self.error(
                f"drop pct is process-wide; this host drops tx={a.drop_tx_pct} rx={a.drop_rx_pct}",
                eid,
            )
        user = cmd["username"]
        if any(e.username == user for e in self.endpoints.values() if not e.finished):
            return self.error(f"username {user!r} already used in this host", eid)
        try:
            codecs = self.resolve_codecs(cmd["codecs"])
        except ValueError as exc:
            return self.error(str(exc), eid)
        endpoint = Endpoint(self, cmd, codecs)
        self.endpoints[eid] = endpoint
        try:
            endpoint.start()
        except pj.Error as exc:
            self.error(f"start failed: {exc.info()}", eid)
            endpoint.finish(Outcome.OSERROR, f"start failed: {exc.info()}", None)

    # ------------------------------------------------------------ loop
    def drain_log(self) -> None:
        while self.logq:
            level, msg = self.logq.popleft()
            parsed = proto.parse_sip_log(msg) if self.args.trace_sip else None
            if parsed:
                direction, text, call_id = parsed
                eid = self.trace_owner(call_id, direction, text)
                if eid is None and proto.is_register(text):
                    eid = self.register_owner(text)
                elif (owner := self.endpoints.get(eid or "")) and owner.hold_trace(direction, text):
                    continue  # a pattern's later call: emitted only if it fails
                self.emit("sip_message", endpoint_id=eid, direction=direction, text=text)
            elif level <= self.args.log_level:
                sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")

    def trace_owner(self, call_id: str | None, direction: str, text: str) -> str | None:
        owners = self.callids.get(call_id or "", set())
        if len(owners) <= 1:
            return next(iter(owners), None)
        user = proto.dialog_side_user(text, direction)
        return next((e for e in owners if self.endpoints[e].username == user), None)

    def register_owner(self, text: str) -> str | None:
        """REGISTER and its responses belong to the endpoint whose AOR is in To."""
        user = proto.to_user(text)
        return next(
            (e.id for e in self.endpoints.values() if e.registration and e.username == user), None
        )

    def handle_events(self, wait_ms: int) -> None:
        """Let PJSIP work, then give the SIP messages it logged to their endpoints at once,
        before any tick: a tick may finish an endpoint or release its call, and a message
        read before it and given out after (the 200 to a de-registration, to a BYE) would
        have no owner left."""
        self.ep.libHandleEvents(wait_ms)
        if self.logq:
            self.drain_log()

    def run(self) -> None:
        next_beat = 0.0
        while self.running:
            self.handle_events(self.poll_ms(time.monotonic()))
            self.read_commands()
            now = time.monotonic()
            # RTP is read by PJSIP's media thread on its own ioqueue (MediaConfig
            # hasIoqueue, threadCnt 1), never here, so Python's work in this loop does not
            # delay a packet's arrival time. (Reading the SIP ioqueue again after each
            # endpoint's tick took a busy host's loop about four libHandleEvents a turn
            # instead of one, for nothing.)
            for endpoint in list(self.endpoints.values()):
                endpoint.tick(now)
            self.send_rejections(now)
            if self.listeners_closed:
                self.gate_listeners(now)
            self.rejected = [c for c in self.rejected if not c.disconnected]
            self.endpoints = {k: e for k, e in self.endpoints.items() if not e.finished}
            if now >= next_beat:
                next_beat = now + 1.0
                self.emit("heartbeat", calls=self.live_calls(), accounts=len(self.accounts))
        self.shutdown()

    def shutdown(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.stopped = True
        deadline = time.monotonic() + 3.0
        while any(not e.finished for e in self.endpoints.values()) and time.monotonic() < deadline:
            self.handle_events(10)
            now = time.monotonic()
            for endpoint in self.endpoints.values():
                endpoint.tick(now)
        for endpoint in self.endpoints.values():
            endpoint.finish(Outcome.TEARDOWN_ERROR, "host shut down before the call ended", None)
        self.drain_log()
        # A Call/Account destroyed after libDestroy aborts the process: drop them all first.
        self.endpoints.clear()
        self.rejected.clear()
        self.to_reject.clear()
        self.accounts.clear()
        self.player = self.playback = None
        gc.collect()
        self.transports.release()
        self.ep.libDestroy()


def poll_wait_ms(now: float, wakes: Iterable[float]) -> int:
    """Milliseconds until the earliest of `wakes` (monotonic times), at most MAX_POLL_MS;
    rounded up, so a wait ends at most 1 ms late rather than a few microseconds early
    (an early wake would find nothing due and spin on zero-length waits)."""
    wait_ms = (min(wakes, default=math.inf) - now) * 1000
    if wait_ms >= MAX_POLL_MS:
        return MAX_POLL_MS
    return max(0, math.ceil(wait_ms - 1e-6))  # (1e-6: 30 ms is not 30.0000000001)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Protocol output gets its own fd; fd 1 becomes stderr so that nothing the
    # native library prints can corrupt the JSON stream.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s host %(message)s"
    )
    host = Host(args, out_fd)
    try:
        host.start_library()
    except pj.Error as exc:
        host.error(f"library start failed: {exc.info()}")
        return 2
    # SIGTERM = shutdown: hang up (BYE) and libDestroy instead of vanishing mid-call
    signal.signal(signal.SIGTERM, lambda *_: setattr(host, "running", False))
    host.run()
    return 0
