"""Network namespaces for tests: "hosts" joined by veth pairs to a bridge the test owns.

Everything is made with `ip` (iproute2) under names derived from this process's
id, on a /24 chosen so that it overlaps no route of the machine, and removed by
`teardown` whatever state setup reached. Nothing is routed off the machine: the
namespaces get no default route, so they reach only the bridge's subnet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


class NetnsUnavailable(Exception):
    """`ip netns` cannot be used here (not root, no iproute2, no permission)."""


def ip(*args: str, netns: str = "") -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no route of this machine covers."""
    routes = [line.split()[0] for line in ip("-4", "route", "show", "table", "all").splitlines()]
    taken = []
    for dest in routes:
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.ip_network(dest, strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randrange(200, 255)}.{random.randrange(256)}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise RuntimeError("no free 10.x.y.0/24 for the test bridge")


@dataclass
class Host:
    """One namespace: its name, its veth ends and its address."""

    netns: str
    outer: str  # veth end on the bridge
    inner: str  # veth end inside the namespace
    address: str

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def link_down(self) -> None:
        """Cut the namespace off: its veth end on the bridge goes down."""
        ip("link", "set", self.outer, "down")

    def rx_tx_packets(self) -> tuple[int, int]:
        """Packets the bridge side of the veth received from and sent to the namespace."""
        stats = Path("/sys/class/net") / self.outer / "statistics"
        return int((stats / "rx_packets").read_text()), int((stats / "tx_packets").read_text())


@dataclass
class Lab:
    """A bridge on the host side and namespaces on it; `teardown` removes all of it."""

    tag: str = field(default_factory=lambda: f"cm{os.getpid() % 100000}")
    bridge: str = ""
    gateway: str = ""  # the bridge's address: where the namespaces reach the host side
    hosts: dict[str, Host] = field(default_factory=dict)

    def setup(self, names: list[str]) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("ip netns needs root")
        try:
            ip("netns", "list")
        except (OSError, RuntimeError) as exc:
            raise NetnsUnavailable(f"ip netns not usable: {exc}") from None
        subnet = _free_subnet()
        addresses = [str(a) for a in subnet.hosts()]
        self.bridge = f"{self.tag}br"
        try:
            ip("link", "add", self.bridge, "type", "bridge")
        except RuntimeError as exc:
            raise NetnsUnavailable(f"cannot make a bridge: {exc}") from None
        self.gateway = addresses[0]
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, name in enumerate(names, start=1):
            host = Host(
                f"{self.tag}{name}", f"{self.tag}{name}0", f"{self.tag}{name}1", addresses[i]
            )
            ip("netns", "add", host.netns)
            self.hosts[name] = host
            ip("link", "add", host.outer, "type", "veth", "peer", "name", host.inner)
            ip("link", "set", host.inner, "netns", host.netns)
            ip("link", "set", host.outer, "master", self.bridge, "up")
            ip("addr", "add", f"{host.address}/24", "dev", host.inner, netns=host.netns)
            ip("link", "set", host.inner, "up", netns=host.netns)
            ip("link", "set", "lo", "up", netns=host.netns)

    def teardown(self) -> None:
        """Remove every namespace, link and the bridge made here (each step on its own)."""
        for host in self.hosts.values():
            with contextlib.suppress(RuntimeError, OSError):
                ip("link", "del", host.outer)  # takes its peer in the namespace with it
            with contextlib.suppress(RuntimeError, OSError):
                ip("netns", "del", host.netns)
        if self.bridge:
            with contextlib.suppress(RuntimeError, OSError):
                ip("link", "del", self.bridge)

    def leftovers(self) -> list[str]:
        """Names made here that still exist (teardown's own check)."""
        links = ip("-o", "link", "show")
        spaces = ip("netns", "list")
        return [
            n
            for n in [self.bridge, *(h.outer for h in self.hosts.values())]
            if f" {n}:" in links or f" {n}@" in links
        ] + [h.netns for h in self.hosts.values() if h.netns in spaces.split()]
