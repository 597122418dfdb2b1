"""A simulated endpoint pool: `callmeter worker --simulate`, for loading the control plane.

It stands where HostPool stands and sends the supervisor the same host-protocol
messages an endpoint host would (ready, phases, call events, one sample per
direction per second, finished), from timers instead of pjsua2: no SIP, no RTP.
A caller of a `repeat` or `rate` group makes the calls its pattern gives (the same
CallPlan a host follows, timed from the run's `calls_from_t`) and reports a call
record for each; its receivers stay idle until the run's end (they send no samples).
So scheduler, dispatcher, ingest and the API see exactly what real workers send,
at a scale two cores could never place calls for. Every endpoint it runs is
announced as simulated (EndpointPhaseChanged.simulated) and its run is marked so;
its samples are plausible G.711 figures, never measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callmeter_vocabulary.metrics import CATALOGUE
from callmeter_vocabulary.sample import make

from ..callplan import CallPlan
from .hostpool import HostProfile, slot_of

OnMessage = Callable[["SimulatedHost", dict[str, Any]], Awaitable[None]]

WAIT_FOR_CALL_S = 1.0  # a receiver's call arrives this long after it is ready (at most)
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9}
NULLS: dict[str, Any] = {m.key: None for m in CATALOGUE}


def sample_metrics(direction: str, second: int, codec: str, rng: random.Random) -> dict[str, Any]:
    """One second of a clean G.711-like stream (50 packets of 160 bytes): plausible
    values for what a healthy call reports, with a little jitter; the rest null."""
    jitter = round(rng.uniform(0.2, 2.0), 3)
    rtt = round(rng.uniform(0.5, 3.0), 3)
    values = {
        "mos": 4.41,
        "r_factor": 93.2,
        "ie_eff": 0.0,
        "delay_impairment_id": 0.0,
        "one_way_delay_ms": rtt / 2 + jitter,
        "jitter_ms": jitter,
        "jitter_mean_ms": jitter,
        "jitter_min_ms": 0.1,
        "jitter_max_ms": jitter * 2,
        "rtt_ms": rtt,
        "rtt_mean_ms": rtt,
        "rtt_min_ms": rtt / 2,
        "rtt_max_ms": rtt * 2,
        "packets_lost": 0,
        "packets_lost_total": 0,
        "fraction_lost": 0.0,
        "loss_percent": 0.0,
        "packets": 50,
        "packets_total": 50 * second,
        "bytes": 8000,
        "bytes_total": 8000 * second,
        "packet_rate_ps": 50.0,
        "bitrate_bps": 64000.0,
        "avg_packet_size_bytes": 160.0,
        "expected_packets": 50,
        "duplicate_packets": 0,
        "duplicate_packets_total": 0,
        "out_of_order_packets": 0,
        "out_of_order_packets_total": 0,
        "sequence_gaps": 0,
        "discarded_packets": 0,
        "discarded_packets_total": 0,
        "codec": codec,
        "payload_type": PAYLOAD_TYPES.get(codec),
        "clock_rate": 8000,
        "ptime_ms": 20,
        "channel_count": 1,
        "codec_bitrate_bps": 64000,
        "audio_level": rng.randrange(20, 120),
        "call_duration_s": float(second),
        "sample_interval_ms": 1000.0,
    }
    if direction == "recv":
        values |= {
            "jb_avg_delay_ms": 40.0,
            "jb_min_delay_ms": 20.0,
            "jb_max_delay_ms": 60.0,
            "jb_frame_size": 160,
            "jb_size": 2,
            "jb_empty": 0,
            "jb_lost": 0,
            "jb_discard": 0,
        }
    else:
        values |= {"remote_fraction_lost": 0.0, "remote_jitter_ms": jitter}
    return {**NULLS, **values}


@dataclass
class SimulatedHost:
    """All simulated endpoints of the worker: slot -> (run, endpoint), as a real host."""

    host_id: str = "sim"
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)
    hangups: dict[str, asyncio.Event] = field(default_factory=dict)

    async def send(self, command: Mapping[str, Any]) -> None:
        if command.get("op") == "hangup" and command.get("endpoint_id") in self.hangups:
            self.hangups[command["endpoint_id"]].set()


class SimulatedPool:
    """HostPool's interface (place, hosts, endpoint_count, watch, shutdown), simulated."""

    def __init__(self, address: str, on_message: OnMessage, seed: int | None = None) -> None:
        self.address = address
        self.on_message = on_message
        self.host = SimulatedHost()
        self.hosts: dict[str, SimulatedHost] = {self.host.host_id: self.host}
        self.rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()

    def endpoint_count(self) -> int:
        return len(self.host.endpoints)

    async def place(
        self, run_id: str, endpoint_id: str, command: dict[str, Any], profile: HostProfile
    ) -> SimulatedHost:
        slot = slot_of(run_id, endpoint_id)
        self.host.endpoints[slot] = (run_id, endpoint_id)
        self.host.hangups[slot] = asyncio.Event()
        task = asyncio.create_task(self._endpoint(slot, command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self.host

    async def watch(self, stop: asyncio.Event) -> None:
        await stop.wait()  # nothing to watch: no subprocesses

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _emit(self, ev: str, slot: str, **fields: Any) -> None:
        await self.on_message(
            self.host, {"ev": ev, "t": time.time(), "endpoint_id": slot, **fields}
        )

    async def _endpoint(self, slot: str, cmd: dict[str, Any]) -> None:
        """The life of one endpoint: ready, (call), samples each second, finished."""
        hangup = self.host.hangups[slot]
        role, duration = cmd["role"], float(cmd["duration_s"])
        codec = (cmd.get("codecs") or ["PCMU"])[0]
        contact = f"sip:{cmd.get('username') or slot}@{self.address}:5060"
        plan = CallPlan(
            cmd.get("pattern") or {"kind": "single"},
            int(cmd.get("group_index", 0)),
            int(cmd.get("group_size", 1)),
            duration,
        )
        try:
            await self._emit("endpoint_ready", slot, contact_uri=contact)
            if plan.multi:
                await self._pattern(slot, role, plan, codec, cmd.get("calls_from_t"))
                return
            if role == "receiver":
                if await _wait(hangup, self.rng.uniform(0.1, WAIT_FOR_CALL_S)):
                    await self._finish(slot, "CALL_FAILED", "stopped before a call arrived")
                    return
                await self._emit("phase", slot, phase="RINGING")
            elif role == "caller":
                await self._emit("phase", slot, phase="CALLING")
                await self._emit(
                    "call_progress",
                    slot,
                    code=180,
                    reason="Ringing",
                    ms_since_invite=round(self.rng.uniform(2, 20), 1),
                )
                await self._emit("phase", slot, phase="RINGING")
            if role != "idle":
                setup = round(self.rng.uniform(5, 40), 1)
                await self._emit(
                    "call_established",
                    slot,
                    codec=codec,
                    call_setup_ms=setup,
                    time_to_trying_ms=None if role == "receiver" else round(setup / 4, 1),
                    time_to_ringing_ms=None if role == "receiver" else round(setup / 2, 1),
                    post_dial_delay_ms=None if role == "receiver" else round(setup / 2, 1),
                )
                await self._emit("phase", slot, phase="INCALL")
            if role == "idle":
                await _wait(hangup, duration)
            else:
                second = await self._held(slot, codec, duration, {"send": 1, "recv": 1})
                await self._emit("phase", slot, phase="DISCONNECTING")
                await self._emit(
                    "call_ended",
                    slot,
                    code=200,
                    reason="Normal call clearing",
                    duration_s=float(second),
                )
            await self._finish(slot, "SUCCESS", "stopped" if hangup.is_set() else "")
        finally:
            self.host.endpoints.pop(slot, None)
            self.host.hangups.pop(slot, None)

    async def _pattern(
        self, slot: str, role: str, plan: CallPlan, codec: str, calls_from_t: float | None
    ) -> None:
        """A patterned endpoint: a caller makes its plan's calls, each with samples for
        every second it is held and a call record; a receiver waits for the run's end."""
        hangup = self.host.hangups[slot]
        t0 = float(calls_from_t or time.time())
        if role != "caller":
            await _wait(hangup, t0 + plan.duration_s - time.time())
            await self._finish(slot, "SUCCESS", "stopped" if hangup.is_set() else "")
            return
        seq = {"send": 0, "recv": 0}
        calls, not_before = 0, 0.0
        while not hangup.is_set() and (nxt := plan.next_call(not_before)) is not None:
            start, hold = nxt
            if await _wait(hangup, t0 + start - time.time()):
                break
            calls += 1
            attempted, setup_ms = time.time(), round(self.rng.uniform(5, 40), 1)
            if calls == 1:  # phases and call events: the first call only, as a host
                await self._emit("phase", slot, phase="CALLING")
            if await _wait(hangup, setup_ms / 1000):
                break
            if calls == 1:
                await self._emit("call_established", slot, codec=codec, call_setup_ms=setup_ms)
                await self._emit("phase", slot, phase="INCALL")
            answered = time.time()
            await self._held(slot, codec, hold, seq)
            ended = time.time()
            quality = {"mos": 4.41, "loss_pct": 0.0, "jitter_ms": 1.0}
            await self._emit(
                "call_record",
                slot,
                seq=calls,
                attempted_t=attempted,
                outcome="SUCCESS",
                code=200,
                reason="",
                codec=codec,
                time_to_trying_ms=round(setup_ms / 4, 1),
                time_to_ringing_ms=round(setup_ms / 2, 1),
                post_dial_delay_ms=round(setup_ms / 2, 1),
                call_setup_ms=setup_ms,
                answered_t=answered,
                duration_s=round(ended - answered, 3),
                quality={"send": quality, "recv": quality},
            )
            not_before = plan.after_call(attempted - t0, ended - t0)
        if calls:
            await self._emit("phase", slot, phase="DISCONNECTING")
        reason = "stopped" if hangup.is_set() else f"{calls} calls"
        await self._finish(slot, "SUCCESS", reason)

    async def _held(self, slot: str, codec: str, hold: float, seq: dict[str, int]) -> int:
        """A call held for `hold` s or until hung up, with both directions' samples each
        second (numbered on from `seq`); the whole seconds it was held."""
        hangup = self.host.hangups[slot]
        started, held = time.monotonic(), 0
        while held < hold and not await _wait(hangup, started + held + 1 - time.monotonic()):
            held += 1
            for direction in ("send", "recv"):
                metrics = sample_metrics(direction, held, codec, self.rng)
                sample = make(slot, direction, seq[direction], metrics)
                seq[direction] += 1
                await self._emit("sample", slot, sample=sample)
        return held

    async def _finish(self, slot: str, outcome: str, reason: str) -> None:
        await self._emit("phase", slot, phase="CLOSED")
        await self._emit("endpoint_finished", slot, outcome=outcome, reason=reason, sip_code=None)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; whether it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
    return event.is_set()
