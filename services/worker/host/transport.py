"""The SIP transports of an endpoint host: UDP at start, TCP/TLS when first asked for."""

from __future__ import annotations

import logging

import pjsua2 as pj

from callmeter_common.procs import port_free

from .sipfilter import ListenerGate

log = logging.getLogger(__name__)


class Transports:
    def __init__(
        self,
        ep: pj.Endpoint,
        bind: str,
        sip_port: int,
        tls_cert: str,
        tls_key: str,
        public: str = "",
    ) -> None:
        self.ep, self.bind, self.sip_port, self.public = ep, bind, sip_port, public
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.ids: dict[str, int] = {}
        self.gates: dict[str, ListenerGate] = {}  # TCP/TLS listeners' (keybudget.py)

    def preferred_port(self, kind: str) -> int:
        """UDP and TCP share the SIP port number; TLS asks for the next one (the port
        allocator only probes UDP, so a TCP/TLS listener may find its port taken)."""
        return self.sip_port + 1 if kind == "tls" else self.sip_port

    def listen_port(self, kind: str) -> int:
        """The port the host's transport of this kind really listens on."""
        info = self.ep.transportGetInfo(self.get(kind))
        return int(info.localName.rsplit(":", 1)[1])

    def get(self, kind: str) -> int:
        """The host's transport of this kind, created on first use.

        TCP/TLS listeners cost sockets out of the 64-handle ioqueue, so a host
        opens them only when an endpoint asks for them. When the preferred TCP/TLS
        port is taken by another process, the listener takes a free port instead
        (listen_port tells which; direct-mode contact URIs use it).
        """
        if kind not in self.ids:
            types = {
                "udp": pj.PJSIP_TRANSPORT_UDP,
                "tcp": pj.PJSIP_TRANSPORT_TCP,
                "tls": pj.PJSIP_TRANSPORT_TLS,
            }
            port = self.preferred_port(kind)
            # PJSIP 2.15 reports a TLS listener whose bind failed as started (it then
            # never accepts), so probe the stream port first rather than trust it
            if kind != "udp" and not port_free(port, self.bind):
                log.warning("%s port %d is taken; listening on a free port", kind, port)
                port = 0
            try:
                tid = self.ep.transportCreate(types[kind], self._config(kind, port))
            except pj.Error as exc:
                if kind == "udp" or port == 0:
                    raise
                log.warning("%s port %d: %s; listening on a free port", kind, port, exc.info())
                tid = self.ep.transportCreate(types[kind], self._config(kind, 0))
            self.ids[kind] = tid
            if kind != "udp":
                self.gates[kind] = ListenerGate(self.bind, self.listen_port(kind))
        return self.ids[kind]

    def close_listeners(self, closed: bool) -> None:
        """Close (or open again) the TCP/TLS listeners to new connections."""
        for gate in self.gates.values():
            gate.set_closed(closed)

    def release(self) -> None:
        """Our descriptors of pjsip's listeners, before the library closes its own."""
        for gate in self.gates.values():
            gate.close()

    def _config(self, kind: str, port: int) -> pj.TransportConfig:
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = self.bind
        if self.public:
            tcfg.publicAddress = self.public  # Via and Contact
        if kind == "tls":
            tls = tcfg.tlsConfig
            tls.certFile, tls.privKeyFile = self.tls_cert, self.tls_key
            tls.method = pj.PJSIP_TLSV1_2_METHOD
            tls.verifyServer = tls.verifyClient = False  # self-signed test beds
        return tcfg
