"""How many failed logins are allowed before the next attempt must wait. Pure."""

from __future__ import annotations

import time
from collections import deque


class LoginLimit:
    """At most `attempts` failed logins per username and per client address in
    `window_s`; then 429 until the oldest failure leaves the window. Pure."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in keys:
            seen = self._failures.get(key)
            while seen and now - seen[0] >= self.window_s:
                seen.popleft()
            if seen is not None and len(seen) >= self.attempts:
                wait = max(wait, self.window_s - (now - seen[0]))
        return wait

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
