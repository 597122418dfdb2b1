"""Subscription filters (wildcards) matching the subjects events build."""

from .endpoint_events import CallRecorded


def run_events(run_id: str) -> str:
    """Everything that happens in one run: `callmeter.run.<id>.>`."""
    return f"callmeter.run.{run_id}.>"


def all_run_events() -> str:
    return "callmeter.run.>"


def all_test_events() -> str:
    """TestSaved and TestDeleted of every test: `callmeter.test.>`."""
    return "callmeter.test.>"


def assignments_for_worker(worker_id: str) -> str:
    """EndpointAssigned events for one worker, across runs."""
    return f"callmeter.run.*.worker.{worker_id}.assigned"


def waits_for_worker(worker_id: str) -> str:
    """ReceiverWaitExtended events for the receivers of one worker, across runs."""
    return f"callmeter.run.*.worker.{worker_id}.wait"


def stop_signals() -> str:
    """RunStopping of any run (every worker listens)."""
    return "callmeter.run.*.status.stopping"


def run_endings() -> list[str]:
    """RunCompleted and RunFailed of any run (what ingest's watermark waits for)."""
    return ["callmeter.run.*.status.completed", "callmeter.run.*.status.failed"]


def call_records() -> str:
    """CallRecorded of every caller of every run (CallRecorded.subject())."""
    return f"callmeter.run.*.endpoint.*.{CallRecorded.token}"


def is_call_record(subject: str) -> bool:
    """A CallRecorded's subject. Per-call records fold into no projection (ingest
    stores them): the folds of the scheduler and dispatcher skip them undecoded."""
    return subject.endswith("." + CallRecorded.token)


def metrics_for_run(run_id: str) -> str:
    return f"callmeter.metrics.{run_id}.>"


def endpoint_events(run_id: str, endpoint_id: str) -> str:
    """Everything one endpoint of a run reported: `callmeter.run.<id>.endpoint.<ep>.>`."""
    return f"callmeter.run.{run_id}.endpoint.{endpoint_id}.>"


def traces_for_endpoint(run_id: str, endpoint_id: str) -> str:
    """The SIP messages of one endpoint (SipMessage.subject())."""
    return f"callmeter.trace.{run_id}.{endpoint_id}"


def traces_for_run(run_id: str) -> str:
    """The SIP messages of every endpoint of a run."""
    return f"callmeter.trace.{run_id}.>"


def everything_of_run(run_id: str) -> dict[str, list[str]]:
    """Per stream, the filters matching every message of one run (for deleting it),
    including what a service dead-lettered from those subjects."""
    own = [run_events(run_id), metrics_for_run(run_id), traces_for_run(run_id)]
    return {
        "CALLMETER_EVENTS": [run_events(run_id)],
        "CALLMETER_METRICS": [metrics_for_run(run_id)],
        "CALLMETER_TRACES": [traces_for_run(run_id)],
        "CALLMETER_DEADLETTER": [f"callmeter.deadletter.*.{s}" for s in own],
    }
