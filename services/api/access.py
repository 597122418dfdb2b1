"""Every API process folds CALLMETER_ACCESS in memory (libs/projections/access.py):
who may log in, who is a member of which organisation with which role, which API
keys exist, and the audit trail.

A write publishes its event and waits until this process's fold has it, so the
next request here sees it; other API processes fold the same event within
milliseconds (one ordered subscription each).
"""

from __future__ import annotations

import asyncio

from callmeter_common.bus import Bus
from callmeter_events import ACCESS, Event
from callmeter_projections.access import AccessState

from .login_limit import LoginLimit


class Access:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.state = AccessState()
        self._folded = asyncio.Condition()
        self.login_limit = LoginLimit()  # failed logins seen by this process

    async def start(self) -> None:
        """Fold what the stream holds before serving, then follow it live."""
        caught_up = asyncio.Event()
        await self.bus.fold(ACCESS, 1, self._on_event, caught_up=caught_up)
        await asyncio.wait_for(caught_up.wait(), 60)

    async def _on_event(self, seq: int, event: Event) -> None:
        self.state.apply(seq, event)
        async with self._folded:
            self._folded.notify_all()

    async def publish(self, event: Event, timeout: float = 10.0) -> None:
        """Publish and wait until this process's fold has it (read-your-writes)."""
        seq = await self.bus.publish(event)
        async with self._folded:
            await asyncio.wait_for(
                self._folded.wait_for(lambda: self.state.position >= seq), timeout
            )

    @property
    def claimed(self) -> bool:
        """The installation has a user: from now on every request must authenticate."""
        return bool(self.state.users)
