"""metrics-ingest settings."""

from callmeter_common.settings import CommonSettings


class IngestSettings(CommonSettings):
    batch_size: int = 1_000
    retry_s: float = 1.0  # pause between attempts while Postgres is unavailable
