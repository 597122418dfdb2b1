"""Test and run lifecycle events (stream CALLMETER_EVENTS)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from .base import Event
from .testdef import TestDefinition


def no_clear_secret(definition: TestDefinition) -> None:
    """The event log can never be rewritten: a secret must be a reference by now."""
    clear = definition.clear_secrets()
    if clear:
        raise ValueError(f"{clear[0]}: a secret in clear cannot go into an event")


class TestSaved(Event):
    type: Literal["TestSaved"] = "TestSaved"
    schema_version: int = 2  # v2: secrets are references (v1 held them in clear)
    test_id: str
    definition: TestDefinition

    @model_validator(mode="after")
    def _no_clear_secret(self) -> TestSaved:
        no_clear_secret(self.definition)
        return self

    def subject(self) -> str:
        return f"callmeter.test.{self.test_id}.saved"


class TestDeleted(Event):
    type: Literal["TestDeleted"] = "TestDeleted"
    test_id: str

    def subject(self) -> str:
        return f"callmeter.test.{self.test_id}.deleted"


class _RunEvent(Event):
    run_id: str
    status_token: ClassVar[str] = ""

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.status.{self.status_token}"

    def dedup_key(self) -> str | None:
        # One status fact per run: a re-derived decision is dropped by JetStream.
        return f"{type(self).__name__}:{self.run_id}"


class RunCreated(_RunEvent):
    type: Literal["RunCreated"] = "RunCreated"
    status_token: ClassVar[str] = "created"
    schema_version: int = 2  # v2: secrets are references (v1 held them in clear)
    test_id: str
    definition: TestDefinition

    @model_validator(mode="after")
    def _no_clear_secret(self) -> RunCreated:
        no_clear_secret(self.definition)
        return self


class RunQueued(_RunEvent):
    type: Literal["RunQueued"] = "RunQueued"
    status_token: ClassVar[str] = "queued"


class RunRejected(_RunEvent):
    """PENDING -> CANNOT_RUN_FOR_NOW, with a reason a user can act on."""

    type: Literal["RunRejected"] = "RunRejected"
    status_token: ClassVar[str] = "rejected"
    reason: str


class RunDispatching(_RunEvent):
    type: Literal["RunDispatching"] = "RunDispatching"
    status_token: ClassVar[str] = "dispatching"
    worker_ids: list[str]
    plan: dict[str, str]  # endpoint id -> worker id, fixed for the whole run


class RunStarted(_RunEvent):
    type: Literal["RunStarted"] = "RunStarted"
    status_token: ClassVar[str] = "started"


class StopRequested(_RunEvent):
    """A command: the user asked to stop the run early."""

    type: Literal["StopRequested"] = "StopRequested"
    status_token: ClassVar[str] = "stop_requested"


class RunStopping(_RunEvent):
    type: Literal["RunStopping"] = "RunStopping"
    status_token: ClassVar[str] = "stopping"


class RunCompleted(_RunEvent):
    type: Literal["RunCompleted"] = "RunCompleted"
    status_token: ClassVar[str] = "completed"
    stopped: bool = False
    reason: str = ""  # what went wrong along the way (e.g. endpoint hosts that died)


class RunFailed(_RunEvent):
    type: Literal["RunFailed"] = "RunFailed"
    status_token: ClassVar[str] = "failed"
    reason: str


class RunSamplesStored(_RunEvent):
    """Ingest's watermark: every sample and SIP message of the finished run is stored (or
    dead-lettered with a reason), so results and traces read from now on are final. Once per run, after its
    RunCompleted or RunFailed; the threshold evaluator waits for it."""

    type: Literal["RunSamplesStored"] = "RunSamplesStored"
    status_token: ClassVar[str] = "samples_stored"
    samples: int  # receive-side samples stored for the run: what its results are made of
    metrics_seq: int  # CALLMETER_METRICS sequence up to which ingest had stored everything


class GeneratorOverloaded(Event):
    """A worker found itself overloaded while it ran endpoints of this run: what it
    measured from this time on (its own endpoints' media above all) reflects the load
    generator, not the system under test. One per (run, worker): the first crossing.

    `reason` names the limit crossed; `figures` are that second's health figures
    (services/worker/supervisor/overload.py: host_cpu, loop_lag_ms, late_hosts,
    tx_expected, tx_sent, tx_deficit, interval_s), None where nothing was measured."""

    type: Literal["GeneratorOverloaded"] = "GeneratorOverloaded"
    run_id: str
    worker_id: str
    reason: str
    figures: dict[str, float | None]

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.worker.{self.worker_id}.overloaded"

    def dedup_key(self) -> str | None:
        return f"GeneratorOverloaded:{self.run_id}:{self.worker_id}"


class ThresholdOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    expression: str
    actual: float | None
    passed: bool


class CapacityStepJudged(Event):
    """One step of a capacity search, judged on its own seconds: the load it had
    (`calls`: callers that had joined, i.e. concurrent calls asked of the system;
    `cps`: the calls per second asked, in a search in calls per second),
    its stop conditions and the values they were judged on. A failed step stops the
    run; the answer is the last step that passed before it."""

    type: Literal["CapacityStepJudged"] = "CapacityStepJudged"
    run_id: str
    step: int  # 0-based
    calls: int
    cps: float | None = None  # a search in calls per second: the step's rate
    window_start: datetime
    window_end: datetime
    passed: bool
    results: list[ThresholdOutcome]
    metrics: dict[str, float | None]
    reason: str = ""  # why it failed beyond its conditions (the generator overloaded)

    def subject(self) -> str:
        return f"callmeter.run.{self.run_id}.capacity.step"

    def dedup_key(self) -> str | None:
        return f"CapacityStepJudged:{self.run_id}:{self.step}"


class RunEvaluated(_RunEvent):
    """The run's thresholds, evaluated once its results are complete."""

    type: Literal["RunEvaluated"] = "RunEvaluated"
    status_token: ClassVar[str] = "evaluated"
    passed: bool
    results: list[ThresholdOutcome]
    metrics: dict[str, float | None]
    # The first GeneratorOverloaded of the run: results after this time measured the
    # load generator as much as the system under test (None: no worker was overloaded).
    generator_overloaded_at: datetime | None = None
    generator_overload: str = ""  # its worker and reason


# The catalogue's run and test events, in the order the docs list them (codec.EVENT_TYPES).
RUN_EVENTS: tuple[type[Event], ...] = (
    TestSaved,
    TestDeleted,
    RunCreated,
    RunQueued,
    RunRejected,
    RunDispatching,
    RunStarted,
    StopRequested,
    RunStopping,
    RunCompleted,
    RunFailed,
    RunSamplesStored,
    RunEvaluated,
    GeneratorOverloaded,
    CapacityStepJudged,
)
