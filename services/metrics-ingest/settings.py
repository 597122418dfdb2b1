"""metrics-ingest settings."""

from callmeter_common.settings import CommonSettings


class IngestSettings(CommonSettings):
    batch_size: int = 2_000  # per fetch and per COPY; bigger batches, fewer round trips
    retry_s: float = 1.0  # pause between attempts while Postgres is unavailable
