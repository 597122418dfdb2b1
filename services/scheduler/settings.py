"""Scheduler settings: the limits runs are validated against (env CALLMETER_*)."""

from callmeter_common.settings import CommonSettings


class SchedulerSettings(CommonSettings):
    max_endpoints_per_run: int = 2_000
    max_concurrent_runs: int = 10  # per organisation, i.e. the whole installation
    max_concurrent_runs_per_project: int = 5
    max_concurrent_endpoints: int = 5_000
    grace_s: float = 60.0  # beyond duration + buildup + receiver wait: the run is FAILED
    receiver_wait_s: float = 30.0  # same name as the dispatcher's: CALLMETER_RECEIVER_WAIT_S
