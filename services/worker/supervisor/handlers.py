"""The worker supervisor: assignments in, host messages out as events, heartbeats.

decode -> place on a host -> ack. Host messages are translated (pure) and
published; a host that dies fails only its own endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from nats.aio.msg import Msg

from callmeter_common.bus import Bus
from callmeter_events import (
    EndpointAssigned,
    EndpointFinished,
    EndpointPhaseChanged,
    Event,
    MetricSample,
    Outcome,
    Phase,
    RunStopping,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)  # fmt: skip

from ..protocol import StartEndpoint
from .batcher import SampleBatcher
from .hostpool import EndpointHost, HostPool, HostProfile
from .settings import WorkerSettings
from .simulated import SimulatedHost, SimulatedPool
from .translate import to_events

log = logging.getLogger(__name__)


def start_command(event: EndpointAssigned) -> StartEndpoint:
    """The host protocol's start_endpoint command for one assignment."""
    c = event.config
    return {
        "op": "start_endpoint", "endpoint_id": event.endpoint_id, "role": c.role,
        "codecs": list(c.codecs), "duration_s": c.duration_s, "target_uri": c.target_uri,
        "username": c.username, "drop_tx_pct": c.drop_tx_pct, "drop_rx_pct": c.drop_rx_pct,
        "call_wait_s": c.call_wait_s, "registrar": c.registrar.model_dump() if c.registrar else None,
        "account": c.account.model_dump() if c.account else None,
        "options": c.options.model_dump(), "scenario": [s.model_dump() for s in c.scenario],
    }  # fmt: skip


class Supervisor:
    def __init__(self, bus: Bus, settings: WorkerSettings) -> None:
        self.bus = bus
        self.settings = settings
        self.pool: HostPool | SimulatedPool
        if settings.simulate:
            self.pool = SimulatedPool(settings.address(), self.on_host_message)
        else:
            self.pool = HostPool(
                settings.endpoints_per_host, settings.rtp_port_range, settings.address(),
                settings.host_silence_s, self.on_host_message, self.on_host_lost,
                settings.trace_sip, tls_files=(settings.tls_cert, settings.tls_key),
                ports=settings.media_port_range(),
            )  # fmt: skip
        self.known: set[tuple[str, str]] = set()  # (run, endpoint) accepted, for redeliveries
        self.delayed: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.stopped: set[str] = set()  # runs told to stop: later assignments never start
        self.beat = 0
        self.samples = SampleBatcher(bus.publish, settings.worker_id)  # MetricBatch out

    async def publish(self, events: list[Event]) -> None:
        for event in events:  # in order: a phase must not overtake the event before it
            if isinstance(event, MetricSample):
                self.samples.add(event)  # out within ~250 ms, as one MetricBatch per run
                continue
            if isinstance(event, EndpointFinished):
                await self.samples.flush(event.run_id)  # its last samples before its end
            await self.bus.publish(event)

    # --- NATS side -------------------------------------------------------------------
    async def handle_batch(self, batch: list[tuple[Msg, Event]]) -> None:
        for msg, event in batch:
            if isinstance(event, EndpointAssigned) and event.worker_id == self.settings.worker_id:
                await self.accept(event)
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
            await self.bus.publish(EndpointFinished(
                run_id=event.run_id, endpoint_id=event.endpoint_id,
                outcome=Outcome.COMPLETED_WITH_WARNINGS, reason="run stopped before this endpoint started",
            ))  # fmt: skip
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

    async def _start_later(self, event: EndpointAssigned) -> None:
        if event.config.start_delay_s > 0:
            await asyncio.sleep(event.config.start_delay_s)  # buildup stagger
        try:
            c = event.config
            profile = HostProfile(tuple(c.codecs), c.drop_tx_pct, c.drop_rx_pct)
            await self.pool.place(event.run_id, event.endpoint_id, start_command(event), profile)
        except (OSError, RuntimeError) as exc:
            await self.bus.publish(EndpointFinished(
                run_id=event.run_id, endpoint_id=event.endpoint_id, outcome=Outcome.OSERROR,
                reason=f"could not start endpoint host: {exc}",
            ))  # fmt: skip

    async def stop_run(self, run_id: str) -> None:
        self.stopped.add(run_id)
        for (run, endpoint), task in list(self.delayed.items()):
            if run == run_id and task.cancel():
                await self.bus.publish(EndpointFinished(
                    run_id=run, endpoint_id=endpoint, outcome=Outcome.COMPLETED_WITH_WARNINGS,
                    reason="run stopped before this endpoint started",
                ))  # fmt: skip
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
                await self.bus.publish(EndpointFinished(
                    run_id=owner[0], endpoint_id=owner[1], outcome=Outcome.OSERROR,
                    reason=f"endpoint host refused it: {msg.get('message')}",
                ))  # fmt: skip
            return
        if owner is not None:
            run_id, endpoint = owner
            await self.publish(to_events(run_id, {**msg, "endpoint_id": endpoint}))

    async def on_host_lost(self, host: EndpointHost, reason: str) -> None:
        for run_id, endpoint in list(host.endpoints.values()):
            await self.bus.publish(EndpointFinished(
                run_id=run_id, endpoint_id=endpoint, outcome=Outcome.OSERROR, reason=reason,
            ))  # fmt: skip

    # --- presence --------------------------------------------------------------------
    def heartbeat(self) -> WorkerHeartbeat:
        s = self.settings
        busy = self.pool.endpoint_count() + len(self.delayed)
        self.beat += 1
        return WorkerHeartbeat(
            worker_id=s.worker_id, region=s.region, capacity=s.capacity,
            free_slots=max(0, s.capacity - busy), load=os.getloadavg()[0] / (os.cpu_count() or 1),
            hosts=len(self.pool.hosts), seq=self.beat,
        )  # fmt: skip

    async def heartbeats(self, stop: asyncio.Event) -> None:
        s = self.settings
        await self.bus.publish(
            WorkerOnline(worker_id=s.worker_id, region=s.region, capacity=s.capacity)
        )
        while not stop.is_set():
            await self.bus.publish(self.heartbeat())
            try:
                await asyncio.wait_for(stop.wait(), timeout=s.heartbeat_s)
            except TimeoutError:
                pass
        await self.bus.publish(WorkerOffline(worker_id=s.worker_id))
