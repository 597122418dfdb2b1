"""Scheduler settings: the limits runs are validated against."""

from callmeter_common.settings import CommonSettings


class SchedulerSettings(CommonSettings):
    max_endpoints_per_run: int = 2_000
    max_concurrent_runs: int = 10
    max_concurrent_endpoints: int = 5_000
    grace_s: float = 60.0  # beyond duration + buildup before a run is declared FAILED
    receiver_wait_s: float = 30.0
