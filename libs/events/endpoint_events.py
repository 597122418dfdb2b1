"""Per-endpoint events (stream CALLMETER_EVENTS), emitted by workers and the dispatcher."""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from callmeter_vocabulary import Outcome, Phase

from .base import Event
from .testdef import (
    AudioRef,
    CallOptions,
    CallPattern,
    Codec,
    Registrar,
    ScenarioAction,
    SinglePattern,
    SipAccount,
)

Role = Literal["caller", "receiver", "idle"]

# The reason a worker gives the endpoints of an endpoint host (one pjsua2 process) that
# died or hung; the scheduler counts the hosts a run lost by it (see lost_host).
_HOST_LOST_RE = re.compile(r"^endpoint host (\S+) (?:was killed|exited|went silent)")


def host_lost_reason(host_id: str, how: str, detail: str | None = None) -> str:
    """`how`: "was killed by SIGABRT", "exited with code 2", "went silent for 5 s"."""
    reason = f"endpoint host {host_id} {how}"
    return f"{reason}: {detail}" if detail else reason


def lost_host(reason: str) -> str | None:
    """The host id in a host_lost_reason, else None."""
    m = _HOST_LOST_RE.match(reason)
    return m.group(1) if m else None


class EndpointConfig(BaseModel):
    """Everything a worker needs to run one endpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str
    role: Role
    codecs: list[Codec]
    duration_s: float
    start_delay_s: float = 0.0
    username: str
    target_uri: str | None = None
    registrar: Registrar | None = None
    account: SipAccount | None = None
    drop_tx_pct: int = 0
    drop_rx_pct: int = 0
    options: CallOptions = CallOptions()
    scenario: list[ScenarioAction] = []
    # receiver: seconds after it is ready it waits for an INVITE before finishing
    # NO_INCOMING_CALL (the dispatcher sets duration + buildup + a margin); None: the
    # host's default of duration + a margin
    call_wait_s: float | None = None
    audio: AudioRef | None = None  # what this endpoint plays (None: the tone)
    speech_reference: AudioRef | None = None  # receiver: record, score PESQ against this
    # caller: how it makes its calls (its group's pattern); receiver: the pattern of the
    # group calling it (anything but single: it takes call after call until call_wait_s)
    pattern: CallPattern = SinglePattern()
    group_index: int = 0  # caller: its place in its group (0-based; the rate's rotation)
    group_size: int = 1
    # caller with a pattern: its group's calls are timed from this instant (the
    # dispatcher sends the group's callers out together, PATTERN_LEAD_S before it), so
    # the group's rate is even across endpoints; an endpoint ready later than that
    # shifts its calls by its lateness. None: from when the endpoint is ready.
    calls_from: datetime | None = None


class _EndpointEvent(Event):
    run_id: str
    endpoint_id: str
    token: ClassVar[str] = ""

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.endpoint.{self.endpoint_id}.{self.token}"


class EndpointAssigned(Event):
    """The dispatcher gives one endpoint to one worker (subject names the worker)."""

    type: Literal["EndpointAssigned"] = "EndpointAssigned"
    schema_version: int = 2  # v2: the account's password is a reference (v1: in clear)
    run_id: str
    endpoint_id: str
    worker_id: str
    config: EndpointConfig

    @model_validator(mode="after")
    def _no_clear_secret(self) -> EndpointAssigned:
        if self.config.account is not None and self.config.account.password is not None:
            raise ValueError("config.account.password: a secret in clear cannot go into an event")
        return self

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.worker.{self.worker_id}.assigned"

    def dedup_key(self) -> str | None:
        return f"EndpointAssigned:{self.run_id}:{self.endpoint_id}"


class ReceiverWaitExtended(Event):
    """A receiver of a group with a call pattern (on the worker the subject names) waits
    for its first call until `wait_until`, not only its own call_wait_s from being
    ready: the dispatcher sends one with the receiver (its callers go out once the
    callee group is ready, or its wait is over) and one when the caller goes out (from
    then, the caller's host start and its pattern's end). A caller whose host starts
    late on a loaded machine still finds its receiver registered."""

    type: Literal["ReceiverWaitExtended"] = "ReceiverWaitExtended"
    run_id: str
    endpoint_id: str  # the receiver
    worker_id: str  # the receiver's worker
    caller_id: str
    wait_until: datetime

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.worker.{self.worker_id}.wait"

    def dedup_key(self) -> str | None:
        # one when the receiver goes out, one when its caller does: both are kept
        until = self.wait_until.timestamp()
        return f"ReceiverWaitExtended:{self.run_id}:{self.endpoint_id}:{self.caller_id}:{until}"


class EndpointPhaseChanged(_EndpointEvent):
    type: Literal["EndpointPhaseChanged"] = "EndpointPhaseChanged"
    token: ClassVar[str] = "phase"
    phase: Phase
    # From a simulated worker (`callmeter worker --simulate`): no real call, no real
    # media; the run it belongs to is marked simulated.
    simulated: bool = False


class EndpointRegistered(_EndpointEvent):
    """Registered with the registrar, or ready to receive in direct mode."""

    type: Literal["EndpointRegistered"] = "EndpointRegistered"
    token: ClassVar[str] = "registered"
    contact_uri: str
    time_to_register_ms: float | None = None
    expires_s: int | None = None


class RegistrationFailed(_EndpointEvent):
    type: Literal["RegistrationFailed"] = "RegistrationFailed"
    token: ClassVar[str] = "registration_failed"
    sip_code: int | None = None
    reason: str


class CallAttempted(_EndpointEvent):
    type: Literal["CallAttempted"] = "CallAttempted"
    token: ClassVar[str] = "call_attempted"
    target_uri: str


class CallProgress(_EndpointEvent):
    type: Literal["CallProgress"] = "CallProgress"
    token: ClassVar[str] = "call_progress"
    sip_code: int
    reason: str = ""
    ms_since_invite: float | None = None


class CallEstablished(_EndpointEvent):
    type: Literal["CallEstablished"] = "CallEstablished"
    token: ClassVar[str] = "call_established"
    codec: str | None = None
    time_to_trying_ms: float | None = None
    time_to_ringing_ms: float | None = None
    post_dial_delay_ms: float | None = None
    call_setup_ms: float | None = None


class CallFailed(_EndpointEvent):
    type: Literal["CallFailed"] = "CallFailed"
    token: ClassVar[str] = "call_failed"
    sip_code: int | None = None
    reason: str


class ScenarioActionExecuted(_EndpointEvent):
    type: Literal["ScenarioActionExecuted"] = "ScenarioActionExecuted"
    token: ClassVar[str] = "scenario_action"
    action: str
    ok: bool
    detail: str = ""


class DtmfReceived(_EndpointEvent):
    type: Literal["DtmfReceived"] = "DtmfReceived"
    token: ClassVar[str] = "dtmf_received"
    digits: str
    method: str


class SpeechQualityMeasured(_EndpointEvent):
    """PESQ (ITU-T P.862) MOS-LQO of what a sampled receiver heard, against the reference
    its caller played; null with `error` when the call could not be scored."""

    type: Literal["SpeechQualityMeasured"] = "SpeechQualityMeasured"
    token: ClassVar[str] = "speech_quality"
    mos_lqo: float | None = None
    mode: Literal["nb", "wb"] | None = None  # P.862.1 narrow-band or P.862.2 wide-band
    codec: str | None = None
    seconds: float | None = None  # length of speech scored
    reference: AudioRef
    error: str = ""

    def dedup_key(self) -> str | None:
        return f"SpeechQualityMeasured:{self.run_id}:{self.endpoint_id}"  # one call, one score


class CallEnded(_EndpointEvent):
    type: Literal["CallEnded"] = "CallEnded"
    token: ClassVar[str] = "call_ended"
    sip_code: int | None = None
    reason: str = ""
    duration_s: float | None = None


class CallRecorded(_EndpointEvent):
    """One call a caller made, whatever became of it: its record (the caller's view).

    `seq` numbers the endpoint's calls from 1. Times are from the INVITE; quality is the
    mean of the call's per-second samples per direction (send = caller -> callee, from
    the peer's RTCP reports; recv = callee -> caller), null where nothing was measured.
    """

    type: Literal["CallRecorded"] = "CallRecorded"
    token: ClassVar[str] = "call_record"
    seq: int
    attempted_at: datetime
    outcome: Outcome
    sip_code: int | None = None
    reason: str = ""
    codec: str | None = None
    time_to_trying_ms: float | None = None
    time_to_ringing_ms: float | None = None
    post_dial_delay_ms: float | None = None
    call_setup_ms: float | None = None
    answered_at: datetime | None = None
    duration_s: float | None = None
    send_mos: float | None = None
    send_loss_pct: float | None = None
    send_jitter_ms: float | None = None
    recv_mos: float | None = None
    recv_loss_pct: float | None = None
    recv_jitter_ms: float | None = None

    def dedup_key(self) -> str | None:
        return f"CallRecorded:{self.run_id}:{self.endpoint_id}:{self.seq}"


class EndpointFinished(_EndpointEvent):
    type: Literal["EndpointFinished"] = "EndpointFinished"
    token: ClassVar[str] = "finished"
    outcome: Outcome
    reason: str = ""
    sip_code: int | None = None

    def dedup_key(self) -> str | None:
        # An endpoint finishes once; a worker-lost verdict and a late report collapse.
        return f"EndpointFinished:{self.run_id}:{self.endpoint_id}"


# The catalogue's endpoint events, in the order the docs list them (codec.EVENT_TYPES).
ENDPOINT_EVENTS: tuple[type[Event], ...] = (
    EndpointAssigned,
    ReceiverWaitExtended,
    EndpointPhaseChanged,
    EndpointRegistered,
    RegistrationFailed,
    CallAttempted,
    CallProgress,
    CallEstablished,
    CallFailed,
    ScenarioActionExecuted,
    DtmfReceived,
    SpeechQualityMeasured,
    CallEnded,
    CallRecorded,
    EndpointFinished,
)
