"""Dispatcher settings."""

from callmeter_common.settings import CommonSettings


class DispatcherSettings(CommonSettings):
    # CALLMETER_HEARTBEAT_S: the same setting the workers beat by, so both sides agree.
    heartbeat_s: float = 1.0
    missed_heartbeats: int = 3  # then the worker is declared lost (CALLMETER_MISSED_HEARTBEATS)
    receiver_wait_s: float = 30.0
    stop_timeout_s: float = 25.0  # endpoints unconfirmed this long after a stop: TEARDOWN_ERROR
