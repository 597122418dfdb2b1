"""Dispatcher settings."""

from callmeter_common.settings import CommonSettings


class DispatcherSettings(CommonSettings):
    heartbeat_s: float = 1.0
    missed_heartbeats: int = 3  # then the worker is declared lost
    receiver_wait_s: float = 30.0
