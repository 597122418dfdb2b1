"""How many of the host's ioqueue keys its SIP connections hold. Pure: no I/O.

PJSIP's select ioqueue has 64 keys per process (PJ_IOQUEUE_MAX_HANDLES). Every
TCP or TLS connection takes one when its socket is registered (an incoming one as
pjsip accepts it, before the application hears of it), and a closed socket's key
comes back only PJ_IOQUEUE_KEY_FREE_DELAY (500 ms) later. pj_ioqueue_register_sock2
(pjlib/src/pj/ioqueue_select.c, 2.15.1) checks `count >= max` only for open keys,
then asserts `!pj_list_empty(&ioqueue->free_list)`: keys waiting out that delay
count for neither, so connections opened and closed quickly (about 63 at 5 ms
spacing) abort the process. The host counts the keys its connections hold, from
the transport state callbacks, and closes its listeners to new connections in the
kernel (sipfilter.ListenerGate) while the count is at its budget.
"""

from __future__ import annotations

from collections import deque

# pjlib's PJ_IOQUEUE_KEY_FREE_DELAY (500 ms), and a margin for the two clocks.
KEY_FREE_DELAY_S = 0.5 + 0.1
# Keys the connections may hold, out of 64. The rest, at most: the SIP UDP socket
# and the TCP and TLS listeners (3); 4 calls' RTP and RTCP sockets (8), and as many
# again waiting out the delay after their calls ended (turned-away INVITEs hold their
# slot for main.REJECT_HOLD_S, so no more media is made faster than that); up to 6
# connections the kernel completed before the gate closed, which pjsip still accepts
# (listen backlog PJSIP_TCP_TRANSPORT_BACKLOG 5, plus one); and a margin.
TCP_KEY_BUDGET = 32


class KeyBudget:
    """Keys held by connections: one per open connection, and one per connection
    destroyed in the last KEY_FREE_DELAY_S."""

    def __init__(self, limit: int = TCP_KEY_BUDGET, free_delay_s: float = KEY_FREE_DELAY_S):
        self.limit, self.free_delay_s = limit, free_delay_s
        self.open: set[int] = set()
        self.freeing: deque[float] = deque()  # when each destroyed connection's key is back

    def connected(self, handle: int) -> None:
        self.open.add(handle)

    def destroyed(self, handle: int, now: float) -> None:
        """A connection's transport was destroyed (its socket closed). One that never
        connected (an outgoing connect that failed) held a key all the same."""
        self.open.discard(handle)
        self.freeing.append(now + self.free_delay_s)

    def held(self, now: float) -> int:
        while self.freeing and self.freeing[0] <= now:
            self.freeing.popleft()
        return len(self.open) + len(self.freeing)

    def full(self, now: float) -> bool:
        return self.held(now) >= self.limit
