"""pjsua2 Account/Call subclasses of the endpoint host: thin callback adapters.

Each callback records a fact on its Endpoint (or the host) and returns; the
endpoint's tick acts on it outside the callback, as PJSUA2.md requires. They
see both only through the interfaces in context.
"""

from __future__ import annotations

import collections
import logging
import re

import pjsua2 as pj

from .context import CallOwner, HostContext

log = logging.getLogger("callmeter.host")
_RURI_RE = re.compile(r"\s*INVITE\s+sips?:([^@;>\s]+)@")


def _guard(fn):
    """A Python exception escaping a pjsua2 director callback can abort the process."""

    def wrapper(self, *args):
        try:
            fn(self, *args)
        except Exception:  # noqa: BLE001 - must never propagate into C++
            log.exception("callback %s failed", fn.__name__)

    return wrapper


def request_user(msg: str) -> str | None:
    """User part of the Request-URI: 'INVITE sip:alice@host:5060 SIP/2.0' -> 'alice'."""
    m = _RURI_RE.match(msg)
    return m.group(1) if m else None


class HostAccount(pj.Account):
    def __init__(self, host: HostContext, endpoint: CallOwner) -> None:
        super().__init__()
        self.host, self.endpoint = host, endpoint

    @_guard
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = HostCall(self.host, self, None, prm.callId)
        call.media_transport = self.host.claim_media_transport()  # None: SDP-less INVITE
        ep = self.endpoint
        if request_user(prm.rdata.wholeMsg) != ep.username:
            # pjsua hands INVITEs for unknown users to the default account; a receiver
            # must not answer a call meant for an endpoint that is not (yet) here
            self.host.reject(call, 404)
            return
        if ep.role != "receiver" or ep.busy():
            self.host.reject(call, 486)  # busy: this endpoint already has its call
            return
        ep.attach_incoming(call)

    @_guard
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        if self.endpoint.registration is not None:
            self.endpoint.registration.on_reg_state(prm)


class HostCall(pj.Call):
    def __init__(
        self, host: HostContext, acc: HostAccount, endpoint: CallOwner | None, cid: int
    ) -> None:
        super().__init__(acc, cid)
        self.host, self.endpoint = host, endpoint
        self.disconnected = False
        self.media_transport: str | None = None  # PJSIP's name of its RTP transport

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
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
            ):
                # a re-INVITE recreates the stream port: connect it again
                self.host.connect_audio(self.getAudioMedia(mi.index))

    @_guard
    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        if self.endpoint is not None:
            self.endpoint.on_dtmf(prm.method, prm.digit)

    @_guard
    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:
        # Last moment the stream statistics exist: take the final sample here.
        if self.endpoint is not None and prm.streamIdx == 0:
            # pjsua destroys the media of a call that ends before it reports the call
            # DISCONNECTED: ask the session, or a BYE from the peer looks like a re-INVITE
            try:
                ending = self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED
            except pj.Error:
                ending = True
            self.endpoint.final_sample(self, ending)


# PJSIP's loss simulation says nothing but this (level 5, sender = the media transport)
TX_DROPPED = "TX RTP packet dropped because of pkt lost simulation"
MEDIA_CREATED = "UDP media transport created"  # level 4, sender = the new transport
SIP_MESSAGE_END = "--end msg--"  # closes each SIP message PJSIP logs (msgLogging)


class SipLogWriter(pj.LogWriter):
    """Receives PJSIP log lines; only queues them (may run on a media thread).

    With the sender in each line (PJ_LOG_HAS_SENDER) it also counts, per media
    transport, the RTP packets the loss simulation dropped (pjmedia counts them as
    sent), and notes each media transport created, so a call can claim its own.

    It queues only what the host passes on: SIP messages when `trace` is on, and lines
    at or below `stderr_level`. Level 4, which the trace and the media transports need,
    says about 50 other things a call (transactions, dialogs, media), all dropped here.
    """

    def __init__(self, queue: collections.deque, trace: bool, stderr_level: int) -> None:
        super().__init__()
        self.queue, self.trace, self.stderr_level = queue, trace, stderr_level
        self.tx_dropped: collections.Counter[str] = collections.Counter()
        self.created: collections.deque[str] = collections.deque(maxlen=64)

    def write(self, entry: pj.LogEntry) -> None:
        try:
            msg = entry.msg
            if TX_DROPPED in msg:
                self.tx_dropped[msg.split(None, 1)[0]] += 1
                return
            if MEDIA_CREATED in msg:
                self.created.append(msg.split(None, 1)[0])
            if entry.level <= self.stderr_level or (self.trace and SIP_MESSAGE_END in msg):
                self.queue.append((entry.level, msg))
        except Exception:  # noqa: BLE001 - never raise into C++
            pass

    def claim_media_transport(self) -> str | None:
        """The media transport created most recently and not claimed yet (pjsua makes a
        call's transport inside makeCall, or before onIncomingCall for an SDP offer)."""
        return self.created.pop() if self.created else None
