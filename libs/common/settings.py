"""One typed settings object per process, read from CALLMETER_* variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Where the platform's servers are. Services extend this with their own knobs."""

    model_config = SettingsConfigDict(env_prefix="CALLMETER_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"  # several nodes: comma-separated, any order
    stream_replicas: int = Field(1, ge=1, le=5)  # copies of every stream in a NATS cluster
    database_url: str = "postgresql://postgres@127.0.0.1:5432/callmeter"
    data_dir: Path = Path(".callmeter")
    log_level: str = "INFO"
