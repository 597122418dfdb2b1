"""API settings."""

from callmeter_common.settings import CommonSettings


class ApiSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    projection_wait_s: float = 10.0  # how long a write waits to be visible in the read models
