"""Disjoint SIP and RTP port ranges for endpoint hosts (PJSUA2.md: never share a media base)."""

from __future__ import annotations

import random
import socket


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out (sip_port, rtp_base) pairs whose ports are free right now.

    Starts at a random offset so that several workers on one machine rarely
    probe the same ranges; released ranges are reused first.
    """

    def __init__(self, span: int, low: int = 16_000, high: int = 60_000) -> None:
        self.span = span
        self.low, self.high = low, high
        self._cursor = random.randrange(low, high - span)
        self._released: list[int] = []
        self._in_use: set[int] = set()

    def acquire(self) -> tuple[int, int]:
        """A SIP port and the first of `span` consecutive RTP ports, all probed free."""
        for _ in range(2_000):
            base = self._released.pop() if self._released else self._next()
            if base in self._in_use:
                continue
            ports = range(base, base + self.span + 1)
            if all(_udp_free(p) for p in ports[::2]) and _udp_free(base + self.span):
                self._in_use.add(base)
                return base + self.span, base  # last port of the block is SIP
        raise RuntimeError("no free port range for an endpoint host")

    def release(self, rtp_base: int) -> None:
        if rtp_base in self._in_use:
            self._in_use.discard(rtp_base)
            self._released.append(rtp_base)

    def _next(self) -> int:
        base = self._cursor
        self._cursor += self.span + 1
        if self._cursor + self.span + 1 >= self.high:
            self._cursor = self.low
        return base
