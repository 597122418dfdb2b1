"""Worker settings: identity, region, capacity and the port space for endpoint hosts."""

import os
import socket

from callmeter_common.settings import CommonSettings


class WorkerSettings(CommonSettings):
    worker_id: str = f"{socket.gethostname()}-{os.getpid()}"
    region: str = "default"
    capacity: int = 200  # endpoint slots this worker accepts
    endpoints_per_host: int = 4  # PJSUA_MAX_CALLS in the pjsua2 wheel
    advertise_host: str = "127.0.0.1"  # address receivers put in their contact URI
    rtp_port_range: int = 40  # media ports reserved per endpoint host
    # CALLMETER_HEARTBEAT_S: the dispatcher reads the same name to know when beats are missed.
    heartbeat_s: float = 1.0
    host_silence_s: float = 5.0  # a host that says nothing this long is declared dead
    trace_sip: bool = True
    # endpoint hosts' stderr (rate-limited) goes to <data_dir>/hosts-<worker_id>.log,
    # rotated at this size with this many old files kept
    host_log_bytes: int = 1_000_000
    host_log_backups: int = 2
    # PEM files for endpoints whose SIP transport is TLS (empty: TLS endpoints fail OSERROR)
    tls_cert: str = ""
    tls_key: str = ""
