"""The SIP socket's kernel filter, on a real socket of our own: long datagrams never arrive."""

from __future__ import annotations

import socket

from callmeter_worker.host.sipfilter import PJSIP_MAX_PKT_LEN, drop_oversized


def test_datagrams_longer_than_pjsips_buffer_are_dropped_in_the_kernel():
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.5)
        assert drop_oversized(*rx.getsockname())
        for size in (PJSIP_MAX_PKT_LEN + 1, 4500, PJSIP_MAX_PKT_LEN, 300):
            tx.sendto(b"x" * size, rx.getsockname())
        assert [len(rx.recv(65535)) for _ in range(2)] == [PJSIP_MAX_PKT_LEN, 300]


def test_no_socket_on_the_port_is_reported_not_raised():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert drop_oversized("127.0.0.1", port) is False
