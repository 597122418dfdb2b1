"""The worker's own health, measured each second: what overload.py judges.

Reads the endpoint hosts' CPU time from /proc, times the supervisor's event loop,
counts hosts gone quiet and adds up the send-side RTP counts of the samples the
hosts report. Nothing here decides; `take()` hands one second's HealthFigures over.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from callmeter_vocabulary.sample import SampleHead

from .hostpool import HostPool
from .overload import HealthFigures

TICKS = os.sysconf("SC_CLK_TCK")
LAG_PROBE_S = 0.1
LATE_START_S = 10.0  # a host not ready this long after it was started is late  # the loop-lag probe sleeps this long and measures how late it wakes


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (its threads included), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: count fields after its closing ')'
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class HealthMonitor:
    def __init__(self, pool: HostPool, late_s: float) -> None:
        self.pool = pool
        self.late_s = late_s
        self.cores = os.cpu_count() or 1
        self._cpu: dict[int, float] = {}  # host pid -> CPU seconds at the last take()
        self._last = time.monotonic()
        self._lag_ms = 0.0
        self._tx_expected = 0.0
        self._tx_sent = 0

    def on_sample(self, sample: SampleHead) -> None:
        """A send-side sample: the packets its media clock was due to send in its
        interval, and the packets PJSIP counted as sent (wire + simulated drops).
        A stream's first sample (its interval is the call so far, not a second) and a
        stream that sent nothing (on hold, not started) say nothing about the clock."""
        if sample.direction != "send" or sample.seq == 0:
            return
        s: Any = sample  # a Sample: the catalogue's keys are its fields
        packets, interval, ptime = s.packets, s.sample_interval_ms, s.ptime_ms
        if not packets or not interval or not ptime:
            return
        self._tx_expected += float(interval) / float(ptime)
        self._tx_sent += int(packets) + int(s.simulated_drops or 0)

    async def probe_loop_lag(self, stop: asyncio.Event) -> None:
        """Sleep LAG_PROBE_S again and again; the worst overshoot is the second's lag."""
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            late_ms = (time.monotonic() - before - LAG_PROBE_S) * 1000.0
            self._lag_ms = max(self._lag_ms, late_ms)

    def _host_cpu(self, elapsed: float) -> float | None:
        now: dict[int, float] = {}
        used = 0.0
        for host in list(self.pool.hosts.values()):
            if not host.ready.is_set():
                continue  # starting: loading Python and PJSIP is not media work
            pid = host.proc.pid
            seconds = cpu_seconds(pid)
            if seconds is None:
                continue
            now[pid] = seconds
            if pid in self._cpu:  # a host that just became ready counts from next second
                used += seconds - self._cpu[pid]
        had = any(pid in self._cpu for pid in now)
        self._cpu = now
        if not had or elapsed <= 0:
            return None
        return used / elapsed / self.cores

    def _late_hosts(self, now: float) -> int:
        """Running hosts silent for late_s, and hosts still not ready LATE_START_S after
        they were started (loading Python and PJSIP takes well under a second)."""
        return sum(
            1
            for h in list(self.pool.hosts.values())
            if not h.lost
            and now - h.last_heard > (self.late_s if h.ready.is_set() else LATE_START_S)
        )

    def take(self) -> HealthFigures:
        """The figures since the previous take(), and start the next second."""
        now = time.monotonic()
        figures = HealthFigures(
            interval_s=now - self._last,
            host_cpu=self._host_cpu(now - self._last),
            loop_lag_ms=self._lag_ms,
            late_hosts=self._late_hosts(now),
            tx_expected=self._tx_expected,
            tx_sent=self._tx_sent,
        )
        self._last, self._lag_ms = now, 0.0
        self._tx_expected, self._tx_sent = 0.0, 0
        return figures
