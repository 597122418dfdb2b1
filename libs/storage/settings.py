"""Storage knobs, read from CALLMETER_* variables like every other setting."""

from callmeter_common.settings import CommonSettings


class StorageSettings(CommonSettings):
    # Runs finished more than this many days ago are deleted whole: samples, rollups,
    # SIP messages, read-model rows and their events in every stream (plus whole
    # day partitions of raw data, or the TimescaleDB policy); 0 keeps everything.
    retention_days: int = 0
    partition_days_ahead: int = 3  # plain mode: day partitions created ahead at start-up
