"""Worker settings: identity, region, capacity, its address and the port space for endpoint hosts."""

import ipaddress
import os
import secrets
import socket
from urllib.parse import urlsplit

from pydantic import field_validator

from callmeter_common.bus import server_urls
from callmeter_common.settings import CommonSettings

from .overload import OverloadLimits


class WorkerSettings(CommonSettings):
    # Host name and pid, plus a few random digits: replicas of a container (same host
    # name on the host network, pid 1 in each) still get ids of their own.
    worker_id: str = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
    region: str = "default"
    capacity: int = 200  # endpoint slots this worker accepts
    endpoints_per_host: int = 4  # PJSUA_MAX_CALLS in the pjsua2 wheel
    # The address peers reach this worker's SIP and RTP at: endpoint hosts bind it and
    # put it in contact URIs and SDP. "": the local address of the route to NATS.
    advertise_address: str = ""
    # The local address its SIP and RTP sockets bind; default: the advertised one. When
    # they differ (a port-forwarding NAT, or 0.0.0.0), hosts advertise the other one.
    bind_address: str = ""
    rtp_port_range: int = 40  # media ports reserved per endpoint host
    media_ports: str = "16000-60000"  # UDP ports endpoint hosts take SIP and RTP ports from
    # CALLMETER_HEARTBEAT_S: the dispatcher reads the same name to know when beats are missed.
    heartbeat_s: float = 1.0
    # Heartbeats come from a thread (beats.py) while the supervisor's loop has run within
    # this long: late is not lost (starved 5-13 s while hosts started), stuck is.
    loop_stuck_s: float = 30.0
    host_silence_s: float = 5.0  # a host that says nothing this long is declared dead
    # ... or, before it is ready, this long after its start (importing pjsua2 and starting
    # the library takes seconds on a busy machine; health.py counts it late at 10 s)
    host_start_s: float = 20.0
    # endpoint hosts starting at once (hostpool.py); 0: no bound
    host_starts: int = 0
    trace_sip: bool = True
    # endpoint hosts' stderr (rate-limited) goes to <data_dir>/hosts-<worker_id>.log,
    # rotated at this size with this many old files kept
    host_log_bytes: int = 1_000_000
    host_log_backups: int = 2
    # PEM files for endpoints whose SIP transport is TLS (empty: TLS endpoints fail OSERROR)
    tls_cert: str = ""
    tls_key: str = ""
    # No pjsua2: endpoints are simulated (supervisor/simulated.py) to load the control
    # plane; what they report is marked simulated, never a measurement.
    simulate: bool = False
    # Overload limits (supervisor/overload.py): a figure over its limit this many seconds
    # in a row publishes GeneratorOverloaded for every run with endpoints here.
    # endpoint hosts' CPU, fraction of all cores; 0.5 from bench/overload.py (README)
    overload_host_cpu: float = 0.5
    # the supervisor's event loop waking this late; 200 ms from bench/overload.py (README)
    overload_loop_lag_ms: float = 200.0
    overload_late_host_s: float = 2.5  # a host silent this long is late (heartbeats: 1 s)
    overload_late_hosts: int = 0  # more late hosts than this
    overload_tx_deficit: float = 0.05  # RTP packets due but never sent, fraction
    overload_sustain_s: int = 3

    def overload_limits(self) -> OverloadLimits:
        return OverloadLimits(
            host_cpu=self.overload_host_cpu,
            loop_lag_ms=self.overload_loop_lag_ms,
            late_hosts=self.overload_late_hosts,
            tx_deficit=self.overload_tx_deficit,
            sustain_s=self.overload_sustain_s,
        )

    @field_validator("advertise_address", "bind_address")
    @classmethod
    def _an_ip_address(cls, value: str) -> str:
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"not an IP address: {value!r}") from None
        return value

    @field_validator("media_ports")
    @classmethod
    def _a_port_range(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
            raise ValueError(f"expected LOW-HIGH within 1024-65535, got {value!r}")
        return value

    def media_port_range(self) -> tuple[int, int]:
        low, high = self.media_ports.split("-")
        return int(low), int(high)

    def address(self) -> str:
        """The address to advertise: the one given, else that of the route to NATS."""
        return self.advertise_address or route_address(self.nats_url)

    def bind(self) -> str:
        """The local address the hosts' sockets bind: the one given, else address()."""
        return self.bind_address or self.address()


def route_address(nats_url: str) -> str:
    """The local address this machine reaches the first NATS server from.

    A UDP connect sends nothing; it only asks the kernel which source address the
    route to NATS uses: the interface other machines reach this one on.
    """
    url = urlsplit(server_urls(nats_url)[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((url.hostname or "127.0.0.1", url.port or 4222))
        return str(s.getsockname()[0])
