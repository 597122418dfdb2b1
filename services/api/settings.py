"""API settings."""

from callmeter_common.settings import CommonSettings


class ApiSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    webhook_secret: str = ""  # used for webhooks that carry no secret of their own
    # The master key of the secret store (32 bytes, base64 or hex); empty: the key file
    # <data_dir>/secret.key, created with mode 0600 on first start.
    secret_key: str = ""
    projection_wait_s: float = 10.0  # how long a write waits to be visible in the read models
    sse_interval_s: float = 1.0  # live pages get at most one update per interval
    # A live run's figures (samples, progress) change without events: its pages'
    # shared read is refreshed this often while someone watches.
    live_refresh_s: float = 5.0
    # Comma-separated Bearer tokens (`KEY` or `PROJECT:KEY`), each an Owner of every
    # project or of its own; when set, every route needs a key or a login.
    api_keys: str = ""
    # The one-time token /setup needs to create the first administrator (`callmeter up`
    # makes one and prints the link); empty: /setup is closed (`callmeter users create`).
    setup_token: str = ""
    # The shortest probe interval the API accepts. 30 s for users; a lower value is
    # for tests only (a probe test runs executions seconds apart), never for production.
    probe_min_interval_s: float = 30.0
    probe_tick_s: float = 1.0  # how often due probes are started and finished ones judged
    max_body_bytes: int = 8 * 1024 * 1024  # a larger request body is refused with 413
    # /readyz fails when metrics-ingest has more messages than this waiting (a batch is
    # ~250 ms of one run's samples from one worker), or the read models are this many
    # events behind the log.
    ready_max_ingest_lag: int = 20_000
    ready_max_projection_lag: int = 1_000
    # /readyz fails when the disk under the embedded NATS store or PostgreSQL data (in
    # CALLMETER_DATA_DIR) has less free space than this.
    ready_min_free_disk_mb: float = 64.0
