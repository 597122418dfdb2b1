"""Kernel filters on the host's SIP sockets (classic BPF, SO_ATTACH_FILTER: no
privileges needed), on sockets pjsip owns and we reach by their address.

- UDP: datagrams pjsip would truncate never arrive. PJSIP reads UDP into a
  PJSIP_MAX_PKT_LEN (4,000 byte) buffer and does not check for truncation: the
  first 4,000 bytes of a longer datagram are parsed as if they were the whole
  message (measured: a 4.5 KB INVITE whose Content-Type runs past the cut became an
  INVITE without SDP that a receiver answered). The filter drops such datagrams
  before pjsip sees them; it costs four instructions per packet.
- TCP/TLS listeners: a gate that, while closed, drops every packet addressed to the
  listener, so no new connection completes (a peer's SYN goes unanswered and its
  kernel retries it, as after a lost packet); connections already made have sockets
  of their own and carry on. keybudget.py says when to close it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct

log = logging.getLogger(__name__)
PJSIP_MAX_PKT_LEN = 4000  # this wheel's receive buffer ("Dropping 4000 bytes packet")
UDP_HEADER = 8  # a UDP socket's filter sees the datagram from its UDP header on
SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27  # asm-generic/socket.h

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_LD_LEN = 0x80  # BPF_LD | BPF_W | BPF_LEN
_JGT_K = 0x25  # BPF_JMP | BPF_JGT | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K


def program(max_payload: int) -> bytes:
    """cBPF: accept a datagram whose payload is at most `max_payload` bytes, drop the rest."""
    insns = [
        (_LD_LEN, 0, 0, 0),  # A = length of the packet (UDP header + payload)
        (_JGT_K, 0, 1, max_payload + UDP_HEADER),  # A > limit ? next : skip one
        (_RET_K, 0, 0, 0),  # drop
        (_RET_K, 0, 0, 0xFFFFFFFF),  # accept all of it
    ]
    return b"".join(struct.pack("HBBI", *i) for i in insns)


def _socket_fd(address: str, port: int, kind: int = socket.SOCK_DGRAM) -> int | None:
    """This process's socket of `kind` bound to address:port (pjsip's, which we do not
    own); for SOCK_STREAM, the listening one (not a connection from that port)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with s:
            if s.type != kind or s.getsockname()[:2] != (address, port):
                continue
            if kind == socket.SOCK_STREAM and not s.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN
            ):
                continue
            return fd
    return None


def _attach(s: socket.socket, code: bytes) -> None:
    buf = ctypes.create_string_buffer(code)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter}
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def drop_oversized(address: str, port: int, max_payload: int = PJSIP_MAX_PKT_LEN) -> bool:
    """Attach the filter to the UDP socket on address:port; False when there is none."""
    fd = _socket_fd(address, port)
    if fd is None:
        log.warning("no UDP socket on %s:%d to filter", address, port)
        return False
    with socket.socket(fileno=os.dup(fd)) as s:  # same socket, our own descriptor
        _attach(s, program(max_payload))
    return True


DROP_ALL = struct.pack("HBBI", _RET_K, 0, 0, 0)  # cBPF: keep no byte of any packet


class ListenerGate:
    """Opens and closes a TCP/TLS listener to new connections, in the kernel."""

    def __init__(self, address: str, port: int) -> None:
        fd = _socket_fd(address, port, socket.SOCK_STREAM)
        if fd is None:
            log.warning("no TCP listener on %s:%d to gate", address, port)
        # same socket, our own descriptor, kept to switch the filter from the event loop
        self.sock = None if fd is None else socket.socket(fileno=os.dup(fd))
        self.port, self.closed = port, False

    def set_closed(self, closed: bool) -> None:
        if self.sock is None or closed == self.closed:
            return
        if closed:
            _attach(self.sock, DROP_ALL)
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        self.closed = closed

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
