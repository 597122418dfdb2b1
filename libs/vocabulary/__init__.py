"""The platform's vocabulary: run status, endpoint phase, outcome, direction.

One definition each, as `StrEnum`s, so a value compares and serialises as the
string it always was ("RUNNING" == RunStatus.RUNNING). `callmeter_events`
re-exports these; they live in this dependency-free package because the
endpoint host (one process per 4 calls, hundreds per worker) needs them too and
must not pay for importing the pydantic event catalogue (measured: +20 MB RSS
and +0.6 s start-up per host process).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANNOT_RUN_FOR_NOW = "CANNOT_RUN_FOR_NOW"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANNOT_RUN_FOR_NOW})


class Phase(StrEnum):
    """Where an endpoint is, in the order an endpoint goes through them."""

    INITIALIZING = "INITIALIZING"
    REGISTERED = "REGISTERED"
    CALLING = "CALLING"
    RINGING = "RINGING"
    NEGOTIATING = "NEGOTIATING"
    INCALL = "INCALL"
    DISCONNECTING = "DISCONNECTING"
    CLOSED = "CLOSED"


class Outcome(StrEnum):
    """How an endpoint ended, ranked by severity (least severe first)."""

    SUCCESS = "SUCCESS"
    COMPLETED_WITH_WARNINGS = "COMPLETED_WITH_WARNINGS"
    REGISTRATION_FAILED = "REGISTRATION_FAILED"
    CALL_FAILED = "CALL_FAILED"
    NEGOTIATION_FAILED = "NEGOTIATION_FAILED"
    NO_INCOMING_CALL = "NO_INCOMING_CALL"  # a receiver that no INVITE reached in time
    TIMEOUT = "TIMEOUT"
    MEDIA_ERROR = "MEDIA_ERROR"
    TEARDOWN_ERROR = "TEARDOWN_ERROR"
    WORKER_LOST = "WORKER_LOST"
    OSERROR = "OSERROR"


GOOD_OUTCOMES = frozenset({Outcome.SUCCESS, Outcome.COMPLETED_WITH_WARNINGS})


class Direction(StrEnum):
    """The direction of a media stream a sample describes, seen from its endpoint."""

    send = "send"
    recv = "recv"


PHASES: tuple[Phase, ...] = tuple(Phase)
OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)
