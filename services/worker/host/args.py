"""Command-line arguments of an endpoint host, and PJSIP's drop-percentage quirk."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def pjsip_drop_pct(pct: int) -> int:
    """PJSIP drops when `rand() % 100 <= pct` (transport_udp.c): pct N drops N+1 %.

    Map the requested percentage onto that; 0 must stay 0 (it disables the
    simulation), so 1 % cannot be expressed and becomes 2 %.
    """
    if pct <= 0:
        return 0
    if pct == 1:
        log.warning("PJSIP cannot simulate 1%% loss; dropping 2%%")
    return max(1, pct - 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="callmeter_worker.host")
    p.add_argument("--sip-port", type=int, required=True)
    p.add_argument("--rtp-port", type=int, required=True)
    p.add_argument("--rtp-port-range", type=int, required=True)
    p.add_argument("--host-id", default="")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument(
        "--public-address",
        default="",
        help="address put in Contact, Via and SDP when peers reach --bind through another"
        " (NAT, or --bind 0.0.0.0); default: --bind",
    )
    p.add_argument("--clock-rate", type=int, default=8000, help="16000 for G722 hosts")
    p.add_argument("--drop-tx-pct", type=int, default=0)
    p.add_argument("--drop-rx-pct", type=int, default=0)
    p.add_argument("--audio", default="", help="WAV the senders loop (default: a tone)")
    p.add_argument("--record-dir", default="", help="where recordings go (default: temp dir)")
    p.add_argument("--trace-sip", action="store_true", help="emit sip_message events")
    p.add_argument("--log-level", type=int, default=2, help="PJSIP log level sent to stderr")
    p.add_argument("--tls-cert", default="", help="PEM certificate for the TLS listener")
    p.add_argument("--tls-key", default="", help="PEM private key for the TLS listener")
    return p.parse_args(argv)
