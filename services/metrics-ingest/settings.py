"""metrics-ingest settings."""

from callmeter_common.settings import CommonSettings


class IngestSettings(CommonSettings):
    batch_size: int = 2_000  # messages per fetch at most; bigger batches, fewer round trips
    max_rows: int = 20_000  # samples per write at most (a write takes what arrived meanwhile)
    retry_s: float = 1.0  # pause between attempts while Postgres is unavailable
