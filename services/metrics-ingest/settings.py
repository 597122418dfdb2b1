"""metrics-ingest settings."""

from callmeter_common.settings import CommonSettings


class IngestSettings(CommonSettings):
    batch_size: int = 2_000  # messages per fetch at most; bigger batches, fewer round trips
    max_rows: int = 20_000  # samples per write at most (a write takes what arrived meanwhile)
    min_rows: int = 5_000  # a write waits for this many samples ...
    linger_s: float = 0.25  # ... or until its oldest sample has waited this long
    # Call records and SIP messages come a few at a time (a rate group: tens a second);
    # written as they came, each took a transaction of its own, the largest part of
    # ingest's CPU at 24 calls/s in bench/cps.py. After a short batch the consumer
    # pauses this long, so they gather.
    trickle_linger_s: float = 0.25
    retry_s: float = 1.0  # pause between attempts while Postgres is unavailable
    fold_every_s: float = 5.0  # rollup deltas folded at least this often under load
