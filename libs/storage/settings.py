"""Storage knobs, read from CALLMETER_* variables like every other setting."""

from callmeter_common.settings import CommonSettings


class StorageSettings(CommonSettings):
    # Raw samples older than this many days are dropped (whole day partitions,
    # or the TimescaleDB retention policy); 0 keeps them forever. Rollups stay.
    retention_days: int = 0
    partition_days_ahead: int = 3  # plain mode: day partitions created ahead at start-up
