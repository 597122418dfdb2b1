"""Is this worker overloaded? The decision from one second's health figures. Pure.

A load generator that is itself short of CPU sends its RTP late or not at all and
then blames the system under test for the jitter and loss it caused. Each second
the worker measures (supervisor/health.py):

- host_cpu: CPU time its running endpoint hosts used in that second, as a fraction
  of the machine's cores (1.0 = every core busy with hosts); a host counts from the
  second after it is ready: starting Python and PJSIP is a burst, not media work;
- loop_lag_ms: how late the supervisor's own event loop woke up (the worst wake-up
  of the second): the loop that reads hosts and publishes their samples;
- late_hosts: running hosts that have said nothing (no heartbeat, no line) for
  longer than the late limit (a host whose main loop does not get to run), and hosts
  not ready 10 s after they were started (normally well under a second);
- tx_expected / tx_sent: RTP packets its calls' media clocks should have sent in
  that second (sample interval / ptime, per stream that sent anything) against what
  PJSIP counted as sent (on the wire plus simulated drops). The clock thread skips
  ticks it cannot catch up with; those packets are never sent. Packets sent late
  but sent are NOT visible: PJSIP keeps no send timestamps, so nothing is invented.

A figure over its limit for `sustain_s` seconds in a row is an overload; the
first one found is the reason. Seconds are counted by the clock (each figure's
interval_s), not by measurements: a starved supervisor measures every few seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class HealthFigures:
    host_cpu: float | None = None  # None: no host ran this second
    loop_lag_ms: float = 0.0
    late_hosts: int = 0
    tx_expected: float = 0.0
    tx_sent: int = 0
    interval_s: float = 1.0  # how long this "second" really was (a starved loop measures late)

    @property
    def tx_deficit(self) -> float | None:
        """Fraction of the packets due that were not sent; None when none were due."""
        if self.tx_expected <= 0:
            return None
        return max(0.0, 1.0 - self.tx_sent / self.tx_expected)

    def as_dict(self) -> dict[str, float | None]:
        return {**asdict(self), "tx_deficit": self.tx_deficit}


@dataclass(frozen=True)
class OverloadLimits:
    host_cpu: float = 0.5  # fraction of all cores (WorkerSettings.overload_host_cpu)
    loop_lag_ms: float = 200.0
    late_hosts: int = 0  # more than this many late hosts
    tx_deficit: float = 0.05  # 5 % of due packets never sent
    # At least this many packets due in the second before the deficit is judged:
    # one stream's count wobbles by a packet at the sample boundaries (49, 51).
    tx_min_expected: float = 200.0
    sustain_s: int = 3


@dataclass
class OverloadJudge:
    """Feed it one HealthFigures per second; it answers a reason once a limit has been
    crossed for `sustain_s` seconds in a row, else None."""

    limits: OverloadLimits
    streak: dict[str, float] | None = None  # figure -> seconds over its limit in a row

    def crossed(self, f: HealthFigures) -> dict[str, str]:
        """The limits this second's figures cross: {figure: why}."""
        lim = self.limits
        out: dict[str, str] = {}
        if f.host_cpu is not None and f.host_cpu > lim.host_cpu:
            out["host_cpu"] = (
                f"endpoint hosts used {f.host_cpu:.0%} of the machine's cores"
                f" (limit {lim.host_cpu:.0%})"
            )
        if f.loop_lag_ms > lim.loop_lag_ms:
            out["loop_lag_ms"] = (
                f"the supervisor's event loop woke {f.loop_lag_ms:.0f} ms late"
                f" (limit {lim.loop_lag_ms:.0f} ms)"
            )
        if f.late_hosts > lim.late_hosts:
            out["late_hosts"] = f"{f.late_hosts} endpoint hosts missed their heartbeats"
        deficit = f.tx_deficit
        if deficit is not None and f.tx_expected >= lim.tx_min_expected:
            if deficit > lim.tx_deficit:
                out["tx_deficit"] = (
                    f"{deficit:.1%} of the RTP packets due were not sent"
                    f" ({f.tx_sent} of {f.tx_expected:.0f}; limit {lim.tx_deficit:.0%})"
                )
        return out

    def observe(self, f: HealthFigures) -> str | None:
        crossed = self.crossed(f)
        previous = self.streak or {}
        self.streak = {k: previous.get(k, 0.0) + f.interval_s for k in crossed}
        for key, why in crossed.items():
            # a hair under the limit still counts: a second measured at 0.999 s
            if self.streak[key] >= self.limits.sustain_s - 0.05:
                return f"{why}, {self.streak[key]:.0f} s in a row"
        return None
