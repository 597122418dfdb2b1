"""The worker supervisor: assignments in, host messages out as events, heartbeats.

decode -> place on a host -> ack. Host messages are translated (pure) and
published; a host that dies fails only its own endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable
from typing import Any

import msgspec
from nats.aio.msg import Msg

from callmeter_common.bus import Bus
from callmeter_common.wav import WavError
from callmeter_events import (
    EndpointAssigned,
    EndpointFinished,
    EndpointPhaseChanged,
    Event,
    GeneratorOverloaded,
    Outcome,
    Phase,
    ReceiverWaitExtended,
    RunStopping,
    SpeechQualityMeasured,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)

from ..protocol import StartEndpoint, WaitUntil
from .audio import AudioStore
from .batcher import SampleBatcher
from .beats import HeartbeatThread
from .credentials import CredentialError, Credentials
from .health import HealthMonitor
from .hostpool import EndpointHost, HostPool, HostProfile, slot_of
from .overload import OverloadJudge
from .scorer import Scorer, record_seconds
from .settings import WorkerSettings
from .simulated import SimulatedHost, SimulatedPool
from .translate import to_events

log = logging.getLogger(__name__)


def start_command(
    event: EndpointAssigned, record_s: float | None = None, password: str = ""
) -> StartEndpoint:
    """The host protocol's start_endpoint command for one assignment (with the account's
    password, fetched for it: the assignment holds only its reference)."""
    c = event.config
    account = c.account
    return {
        "op": "start_endpoint",
        "endpoint_id": event.endpoint_id,
        "role": c.role,
        "codecs": list(c.codecs),
        "duration_s": c.duration_s,
        "target_uri": c.target_uri,
        "username": c.username,
        "drop_tx_pct": c.drop_tx_pct,
        "drop_rx_pct": c.drop_rx_pct,
        "call_wait_s": c.call_wait_s,
        "registrar": c.registrar.model_dump() if c.registrar else None,
        "account": {
            "username": account.username,
            "password": password,
            "auth_username": account.auth_username,
        }
        if account
        else None,
        "options": c.options.model_dump(),
        "scenario": [s.model_dump() for s in c.scenario],
        "record_s": record_s,
        "pattern": c.pattern.model_dump(),
        "group_index": c.group_index,
        "group_size": c.group_size,
        "calls_from_t": c.calls_from.timestamp() if c.calls_from else None,
    }


def wait_command(run_id: str, endpoint_id: str, until: float) -> WaitUntil:
    """The host protocol's wait_until command: a receiver's first-call deadline."""
    return {"op": "wait_until", "endpoint_id": slot_of(run_id, endpoint_id), "until_t": until}


class Supervisor:
    def __init__(self, bus: Bus, settings: WorkerSettings) -> None:
        self.bus = bus
        self.settings = settings
        # audio files for hosts and the recordings they write (removed by close())
        self.speech_dir = tempfile.mkdtemp(prefix="callmeter-speech-")
        self.pool: HostPool | SimulatedPool
        if settings.simulate:
            self.pool = SimulatedPool(settings.address(), self.on_host_message)
        else:
            self.pool = HostPool(
                settings.endpoints_per_host,
                settings.rtp_port_range,
                settings.bind(),
                settings.host_silence_s,
                self.on_host_message,
                self.on_host_lost,
                settings.trace_sip,
                tls_files=(settings.tls_cert, settings.tls_key),
                ports=settings.media_port_range(),
                record_dir=self.speech_dir,
                start_s=settings.host_start_s,
                public=settings.address(),
                max_starting=settings.host_starts,
            )
        self.audio = AudioStore(bus, self.speech_dir)
        self.credentials = Credentials(bus, settings.worker_id)
        self.scorer = Scorer()
        # sampled receivers: (run, endpoint) -> (reference, its WAV at the host's rate)
        self.references: dict[tuple[str, str], tuple[str, str]] = {}
        self.scoring: dict[tuple[str, str], Awaitable[SpeechQualityMeasured]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self.known: set[tuple[str, str]] = set()  # (run, endpoint) accepted, for redeliveries
        self.delayed: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.stopped: set[str] = set()  # runs told to stop: later assignments never start
        # receivers' first-call deadlines (unix time, ReceiverWaitExtended), and the
        # endpoints whose start command went to their host (a deadline is sent after it)
        self.first_call_by: dict[tuple[str, str], float] = {}
        self.placed: dict[tuple[str, str], EndpointHost | SimulatedHost] = {}
        self.beat = 0
        self.samples = SampleBatcher(bus.publish, settings.worker_id)  # MetricBatch out
        # Own health (real hosts only: a simulated worker measures nothing)
        self.health = (
            HealthMonitor(self.pool, settings.overload_late_host_s)
            if isinstance(self.pool, HostPool)
            else None
        )
        self.judge = OverloadJudge(settings.overload_limits())
        self.overloaded: set[str] = set()  # runs told this worker is overloaded

    async def publish(self, events: list[Event]) -> None:
        for event in events:  # in order: a phase must not overtake the event before it
            if isinstance(event, EndpointFinished):
                await self.samples.flush(event.run_id)  # its last samples before its end
            await self.bus.publish(event)

    # --- NATS side -------------------------------------------------------------------
    async def handle_batch(self, batch: list[tuple[Msg, Event]]) -> None:
        for msg, event in batch:
            if isinstance(event, EndpointAssigned) and event.worker_id == self.settings.worker_id:
                await self.accept(event)
            elif isinstance(event, ReceiverWaitExtended):
                if event.worker_id == self.settings.worker_id:
                    await self.extend_wait(event)
            elif isinstance(event, RunStopping):
                await self.stop_run(event.run_id)
            await msg.ack()

    async def accept(self, event: EndpointAssigned) -> None:
        key = (event.run_id, event.endpoint_id)
        if key in self.known:
            return
        self.known.add(key)
        if event.run_id in self.stopped:
            # The dispatcher assigned it before it saw the stop; starting it now would
            # leave a call running in a run that is already winding down.
            await self.bus.publish(
                EndpointFinished(
                    run_id=event.run_id,
                    endpoint_id=event.endpoint_id,
                    outcome=Outcome.COMPLETED_WITH_WARNINGS,
                    reason="run stopped before this endpoint started",
                )
            )
            return
        await self.bus.publish(
            EndpointPhaseChanged(
                run_id=event.run_id,
                endpoint_id=event.endpoint_id,
                phase=Phase.INITIALIZING,
                simulated=self.settings.simulate,
            )
        )
        task = asyncio.ensure_future(self._start_later(event))
        self.delayed[key] = task
        task.add_done_callback(lambda _t: self.delayed.pop(key, None))

    async def extend_wait(self, event: ReceiverWaitExtended) -> None:
        """A receiver's caller went out: its host learns the later first-call deadline
        (now, or right after its start command if that has not gone yet)."""
        key = (event.run_id, event.endpoint_id)
        until = max(event.wait_until.timestamp(), self.first_call_by.get(key, 0.0))
        self.first_call_by[key] = until
        host = self.placed.get(key)
        if host is not None and slot_of(*key) in host.endpoints:  # not finished yet
            await host.send(wait_command(*key, until))

    async def _start_later(self, event: EndpointAssigned) -> None:
        key = (event.run_id, event.endpoint_id)
        if event.config.start_delay_s > 0:
            await asyncio.sleep(event.config.start_delay_s)  # buildup stagger
        c = event.config
        profile = HostProfile(tuple(c.codecs), c.drop_tx_pct, c.drop_rx_pct)
        try:
            if c.audio:
                audio = await self.audio.path(c.audio, profile.clock_rate)
                profile = HostProfile(profile.codecs, c.drop_tx_pct, c.drop_rx_pct, audio)
        except (LookupError, WavError) as exc:
            await self.bus.publish(
                EndpointFinished(
                    run_id=event.run_id,
                    endpoint_id=event.endpoint_id,
                    outcome="MEDIA_ERROR",
                    reason=f"audio: {exc}",
                )
            )
            return
        password = ""
        if c.account is not None and c.account.password_ref is not None:
            try:
                password = await self.credentials.password(event)
            except CredentialError as exc:
                await self.bus.publish(
                    EndpointFinished(
                        run_id=event.run_id,
                        endpoint_id=event.endpoint_id,
                        outcome=Outcome.REGISTRATION_FAILED,
                        reason=f"no password for {c.account.username}: {exc}",
                    )
                )
                return
        record_s = await self._sample_speech(event, profile.clock_rate)
        try:
            command = start_command(event, record_s, password)
            host = await self.pool.place(event.run_id, event.endpoint_id, command, profile)
        except (OSError, RuntimeError) as exc:
            await self.bus.publish(
                EndpointFinished(
                    run_id=event.run_id,
                    endpoint_id=event.endpoint_id,
                    outcome=Outcome.OSERROR,
                    reason=f"could not start endpoint host: {exc}",
                )
            )
            return
        self.placed[key] = host
        if key in self.first_call_by:  # extended while the host was starting
            await host.send(wait_command(*key, self.first_call_by[key]))

    async def _sample_speech(self, event: EndpointAssigned, clock_rate: int) -> float | None:
        """A receiver sampled for PESQ: its reference at the host's rate, and how long
        to record. A reason is published instead when the call cannot be scored."""
        ref, run, ep = event.config.speech_reference, event.run_id, event.endpoint_id
        if ref is None or event.config.role != "receiver":
            return None
        record_s = record_seconds(event.config.duration_s)
        try:
            if record_s is None:
                raise ValueError(f"a {event.config.duration_s:g} s call is too short to score")
            self.references[(run, ep)] = (ref, await self.audio.path(ref, clock_rate))
            return record_s
        except (ValueError, LookupError) as exc:  # WavError is a ValueError
            await self.bus.publish(
                SpeechQualityMeasured(
                    run_id=run,
                    endpoint_id=ep,
                    reference=ref,
                    error=str(exc),
                )
            )
            return None

    def _score(self, key: tuple[str, str], msg: dict[str, Any]) -> None:
        """A sampled receiver's recording arrived: score it in the background."""
        ref, ref_path = self.references.pop(key)
        base = {"run_id": key[0], "endpoint_id": key[1], "reference": ref, "codec": msg["codec"]}

        async def measured() -> SpeechQualityMeasured:
            if not msg["path"]:
                return SpeechQualityMeasured(**base, error=msg["error"] or "nothing recorded")
            result = await self.scorer.score(ref_path, msg["path"], msg["codec"])
            return SpeechQualityMeasured(**base, **result)

        self.scoring[key] = asyncio.ensure_future(measured())

    async def _finish_after_score(self, key: tuple[str, str], events: list[Event]) -> None:
        """The score goes out before the endpoint's end (the run's view ignores later news)."""
        try:
            await self.bus.publish(await self.scoring.pop(key))
        except Exception:
            log.exception("scoring %s", key)
        await self.publish(events)

    def close(self) -> None:
        self.scorer.close()
        shutil.rmtree(self.speech_dir, ignore_errors=True)

    async def stop_run(self, run_id: str) -> None:
        self.stopped.add(run_id)
        for (run, endpoint), task in list(self.delayed.items()):
            if run == run_id and task.cancel():
                await self.bus.publish(
                    EndpointFinished(
                        run_id=run,
                        endpoint_id=endpoint,
                        outcome=Outcome.COMPLETED_WITH_WARNINGS,
                        reason="run stopped before this endpoint started",
                    )
                )
        for host in list(self.pool.hosts.values()):
            for slot, (run, _) in list(host.endpoints.items()):
                if run == run_id:
                    await host.send({"op": "hangup", "endpoint_id": slot})

    # --- host side -------------------------------------------------------------------
    async def on_host_message(
        self, host: EndpointHost | SimulatedHost, msg: dict[str, Any]
    ) -> None:
        slot = msg.get("endpoint_id")  # the host knows its endpoints by slot (slot_of)
        owner = host.endpoints.get(slot) if isinstance(slot, str) else None
        if msg.get("ev") == "error":
            log.warning("host %s: %s", host.host_id, msg.get("message"))
            if owner is not None:
                # The host refused the endpoint (limits, bad codec...): it will never report.
                host.endpoints.pop(slot, None)
                await self.bus.publish(
                    EndpointFinished(
                        run_id=owner[0],
                        endpoint_id=owner[1],
                        outcome=Outcome.OSERROR,
                        reason=f"endpoint host refused it: {msg.get('message')}",
                    )
                )
            return
        if owner is not None:
            key = owner
            if msg["ev"] == "recording" and key in self.references:
                self._score(key, msg)
                return
            if msg["ev"] == "sample":  # stamped with the endpoint's id, out within ~250 ms
                sample = msgspec.structs.replace(msg["sample"], endpoint_id=owner[1])
                if self.health is not None:
                    self.health.on_sample(sample)
                self.samples.add(owner[0], sample)  # as one MetricBatch per run
                return
            events = to_events(owner[0], {**msg, "endpoint_id": owner[1]})
            if msg["ev"] == "endpoint_finished":
                self.placed.pop(key, None)
                self.first_call_by.pop(key, None)
            if msg["ev"] == "endpoint_finished" and key in self.scoring:
                # a background task, so this host's other messages do not wait for PESQ
                task = asyncio.ensure_future(self._finish_after_score(key, events))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            await self.publish(events)

    async def on_host_lost(self, host: EndpointHost, reason: str) -> None:
        for run_id, endpoint in list(host.endpoints.values()):
            self.references.pop((run_id, endpoint), None)
            self.placed.pop((run_id, endpoint), None)
            self.first_call_by.pop((run_id, endpoint), None)
            await self.bus.publish(
                EndpointFinished(
                    run_id=run_id,
                    endpoint_id=endpoint,
                    outcome=Outcome.OSERROR,
                    reason=reason,
                )
            )

    # --- own health ------------------------------------------------------------------
    def active_runs(self) -> set[str]:
        runs = {run for host in self.pool.hosts.values() for run, _ in host.endpoints.values()}
        return runs | {run for run, _ in self.delayed}

    async def watch_health(self, stop: asyncio.Event) -> None:
        """Each second: measure, judge, and tell every run with endpoints here once."""
        if self.health is None:
            return
        lag = asyncio.ensure_future(self.health.probe_loop_lag(stop))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                figures = self.health.take()
                reason = self.judge.observe(figures)
                if self.judge.streak:  # a limit crossed this second: say which, and how long
                    log.info("health: %s; %s", self.judge.streak, figures.as_dict())
                if reason is None:
                    continue
                for run_id in sorted(self.active_runs() - self.overloaded):
                    log.warning("overloaded during run %s: %s", run_id, reason)
                    await self.bus.publish(
                        GeneratorOverloaded(
                            run_id=run_id,
                            worker_id=self.settings.worker_id,
                            reason=reason,
                            figures=figures.as_dict(),
                        )
                    )
                    self.overloaded.add(run_id)
        finally:
            lag.cancel()

    # --- presence --------------------------------------------------------------------
    def heartbeat_figures(self) -> tuple[int, int]:
        """(free slots, hosts), read on this loop: the heartbeat thread gets a copy and
        never iterates the pool's dicts while this loop changes them."""
        s = self.settings
        busy = self.pool.endpoint_count() + len(self.delayed)
        return max(0, s.capacity - busy), len(self.pool.hosts)

    def heartbeat(self, figures: tuple[int, int]) -> WorkerHeartbeat:
        """The next heartbeat (on the heartbeat thread) from the loop's last figures."""
        s = self.settings
        free_slots, hosts = figures
        self.beat += 1
        return WorkerHeartbeat(
            worker_id=s.worker_id,
            region=s.region,
            capacity=s.capacity,
            free_slots=free_slots,
            load=os.getloadavg()[0] / (os.cpu_count() or 1),
            hosts=hosts,
            seq=self.beat,
            public_key=self.credentials.public_key,
        )

    async def heartbeats(self, stop: asyncio.Event) -> None:
        """WorkerOnline, then one heartbeat every `heartbeat_s` from a thread of their
        own (beats.py: a loop starved of CPU while hosts start must not silence them),
        while this loop says it still runs; WorkerOffline at the end."""
        s = self.settings
        await self.bus.publish(
            WorkerOnline(
                worker_id=s.worker_id,
                region=s.region,
                capacity=s.capacity,
                public_key=self.credentials.public_key,
            )
        )
        beats = HeartbeatThread(
            s.nats_url,
            f"worker-{s.worker_id}-beats",
            self.heartbeat,
            self.heartbeat_figures(),
            s.heartbeat_s,
            s.loop_stuck_s,
        )
        beats.start()
        try:
            while not stop.is_set():
                beats.touch(self.heartbeat_figures())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=s.heartbeat_s)
        finally:
            await asyncio.to_thread(beats.stop)
        await self.bus.publish(WorkerOffline(worker_id=s.worker_id))
