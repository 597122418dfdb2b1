"""A kernel filter on the host's SIP UDP socket: datagrams pjsip would truncate never arrive.

PJSIP reads UDP into a PJSIP_MAX_PKT_LEN (4,000 byte) buffer and does not check
for truncation: the first 4,000 bytes of a longer datagram are parsed as if they
were the whole message (measured: a 4.5 KB INVITE whose Content-Type runs past the
cut became an INVITE without SDP that a receiver answered). A classic BPF socket
filter (SO_ATTACH_FILTER, no privileges needed) drops such datagrams in the
kernel before pjsip sees them; it costs four instructions per packet.
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
SO_ATTACH_FILTER = 26  # asm-generic/socket.h

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


def _udp_socket_fd(address: str, port: int) -> int | None:
    """This process's UDP socket bound to address:port (pjsip's, which we do not own)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with s:
            if s.type == socket.SOCK_DGRAM and s.getsockname()[:2] == (address, port):
                return fd
    return None


def drop_oversized(address: str, port: int, max_payload: int = PJSIP_MAX_PKT_LEN) -> bool:
    """Attach the filter to the UDP socket on address:port; False when there is none."""
    fd = _udp_socket_fd(address, port)
    if fd is None:
        log.warning("no UDP socket on %s:%d to filter", address, port)
        return False
    code = program(max_payload)
    buf = ctypes.create_string_buffer(code)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter}
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
    with socket.socket(fileno=os.dup(fd)) as s:  # same socket, our own descriptor
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    return True
