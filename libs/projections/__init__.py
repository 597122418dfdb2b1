"""Pure projections: fold events into run, endpoint, test and worker state.

Each state is a frozen dataclass and each `apply_*` is a pure function of
(state, event); `RunsProjection` only indexes states by id.
"""

from .outages import Outage, covered_s
from .probes import ProbeHealthState, apply_probe
from .runs import EndpointState, RunsProjection, RunState, StatusChange, apply_endpoint, apply_run
from .tests import TestState, apply_test
from .workers import WorkerState, apply_worker

__all__ = [
    "EndpointState",
    "Outage",
    "ProbeHealthState",
    "RunState",
    "RunsProjection",
    "StatusChange",
    "TestState",
    "WorkerState",
    "apply_endpoint",
    "apply_probe",
    "apply_run",
    "apply_test",
    "apply_worker",
    "covered_s",
]
