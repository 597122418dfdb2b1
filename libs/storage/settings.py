"""Storage knobs, read from CALLMETER_* variables like every other setting."""

from callmeter_common.settings import CommonSettings


class StorageSettings(CommonSettings):
    # Runs finished more than this many days ago are deleted whole: samples, rollups,
    # SIP messages, read-model rows and their events in every stream (plus whole
    # day partitions of raw data, or the TimescaleDB policy); 0 keeps everything.
    retention_days: int = 0
    # A probe execution is a small real run every interval (2,880 a day at 30 s): once
    # judged, its run is deleted whole this many days after it finished; its judgement
    # (health, MOS, PDD, success) stays in the probe's history. 0 keeps them.
    probe_retention_days: int = 7
    partition_days_ahead: int = 3  # plain mode: day partitions created ahead at start-up
