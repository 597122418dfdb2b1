"""What an endpoint host writes to stderr: rate-limited into a rotated log, its last words kept.

PJSIP prints whole packets on parse errors, so a SIP flood at one host used to
write megabytes into the worker's log. Each host's lines now pass a token bucket
(excess counted, reported as one line now and then) into the `callmeter.host`
logger, which the worker writes to a size-rotated file of its own. The last lines
are kept in memory, so when a host dies its native assertion (pjsip's `Assertion
... failed`) becomes its endpoints' reason. Pure: no I/O here.
"""

from __future__ import annotations

import collections
import re
import signal

from callmeter_events import host_lost_reason

MAX_LINE = 500  # characters of one host line that are logged
_ASSERTION_RE = re.compile(r"(\w+): (Assertion .+ failed)")


class HostOutput:
    def __init__(self, rate_per_s: float = 20.0, burst: int = 200, tail: int = 40) -> None:
        self.rate, self.burst = rate_per_s, float(burst)
        self.tokens = float(burst)
        self.last: float | None = None  # when the last line came
        self.suppressed = 0  # lines dropped since the last take_suppressed()
        self.tail: collections.deque[str] = collections.deque(maxlen=tail)
        self.assertion: str | None = None  # "function: Assertion `expr' failed"

    def feed(self, line: str, now: float) -> str | None:
        """The line to log (cut to MAX_LINE), or None when over the rate."""
        line = line.rstrip("\r\n")
        self.tail.append(line[:MAX_LINE])
        m = _ASSERTION_RE.search(line)
        if m:
            self.assertion = f"{m.group(1)}: {m.group(2)}"[:MAX_LINE]
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0 and m is None:  # a dying host's assertion always gets through
            self.suppressed += 1
            return None
        self.tokens = max(0.0, self.tokens - 1.0)
        return line[:MAX_LINE]

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


def exit_reason(host_id: str, code: int | None, assertion: str | None) -> str:
    """Why a host's endpoints ended: how it exited and, for a native abort, pjsip's words."""
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return host_lost_reason(host_id, how, assertion)
