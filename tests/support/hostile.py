"""Hostile SIP senders for tests: one malformed oversized INVITE, and a burst of valid ones.

Raw UDP from a socket of our own; nothing answers the host's responses (so its
transactions retransmit and time out, as with a real flood).
"""

from __future__ import annotations

import socket
import uuid

SDP = (
    "v=0\r\no=hostile 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite(
    host: str, port: int, user: str, lport: int, body: str = "", content_type: str = ""
) -> bytes:
    """One INVITE for sip:user@host:port from 127.0.0.1:lport with a fresh Call-ID."""
    tag = uuid.uuid4().hex[:10]
    ctype = f"Content-Type: {content_type}\r\n" if content_type else ""
    return (
        f"INVITE sip:{user}@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{tag}\r\n"
        f"From: <sip:hostile@127.0.0.1:{lport}>;tag={tag}\r\n"
        f"To: <sip:{user}@{host}:{port}>\r\n"
        f"Call-ID: {tag}@hostile\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:hostile@127.0.0.1:{lport}>\r\n{ctype}"
        f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    ).encode()


def oversized_invite(host: str, port: int, user: str) -> int:
    """The 4.5 KB INVITE of issue 15: Content-Type `application/` + ~4 KB of junk."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        junk = "x" * 4000
        packet = invite(host, port, user, lport, SDP.format(port=lport + 2), "application/" + junk)
        s.sendto(packet, (host, port))
    return len(packet)


def invite_burst(host: str, port: int, user: str, count: int) -> int:
    """`count` valid INVITEs (distinct Call-IDs, SDP offers) back to back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        for _ in range(count):
            s.sendto(
                invite(host, port, user, lport, SDP.format(port=lport + 2), "application/sdp"),
                (host, port),
            )
    return count
