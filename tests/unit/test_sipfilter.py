"""The SIP sockets' kernel filters, on real sockets of our own: long datagrams never arrive,
and a closed listener gate lets no new connection complete."""

from __future__ import annotations

import socket

from callmeter_worker.host.keybudget import KeyBudget
from callmeter_worker.host.sipfilter import PJSIP_MAX_PKT_LEN, ListenerGate, drop_oversized


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


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
    except TimeoutError:
        return False
    return True


def test_a_closed_listener_gate_lets_no_connection_complete_and_spares_open_ones():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lis:
        lis.bind(("127.0.0.1", 0))
        lis.listen(5)
        port = lis.getsockname()[1]
        # a connection from the same port is not the listener: the gate finds the listener
        gate = ListenerGate("127.0.0.1", port)
        assert gate.sock is not None
        with socket.create_connection(("127.0.0.1", port), timeout=1) as before:
            accepted, _ = lis.accept()
            with accepted:
                gate.set_closed(True)
                assert not _connects(port)  # its SYN went unanswered
                before.sendall(b"still here")  # an accepted connection carries on
                assert accepted.recv(100) == b"still here"
                gate.set_closed(False)
                assert _connects(port)
        gate.close()
    assert ListenerGate("127.0.0.1", port).sock is None  # no listener there any more


def test_connections_hold_keys_until_half_a_second_after_they_are_destroyed():
    keys = KeyBudget(limit=3, free_delay_s=0.6)
    keys.connected(1)
    keys.connected(2)
    assert keys.held(0.0) == 2 and not keys.full(0.0)
    keys.destroyed(1, now=1.0)  # closed: its key still waits out pjlib's delay
    keys.destroyed(9, now=1.0)  # an outgoing connect that failed held one too
    assert keys.held(1.0) == 3 and keys.full(1.0)
    assert keys.held(1.59) == 3 and keys.held(1.6) == 1
    keys.connected(3)
    keys.connected(4)
    assert keys.full(1.7)
