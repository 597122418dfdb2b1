"""Subscription filters (wildcards) matching the subjects events build."""


def run_events(run_id: str) -> str:
    """Everything that happens in one run: `callmeter.run.<id>.>`."""
    return f"callmeter.run.{run_id}.>"


def all_run_events() -> str:
    return "callmeter.run.>"


def assignments_for_worker(worker_id: str) -> str:
    """EndpointAssigned events for one worker, across runs."""
    return f"callmeter.run.*.worker.{worker_id}.assigned"


def stop_signals() -> str:
    """RunStopping of any run (every worker listens)."""
    return "callmeter.run.*.status.stopping"


def metrics_for_run(run_id: str) -> str:
    return f"callmeter.metrics.{run_id}.>"
