"""The pool of endpoint-host subprocesses: start, feed, watch, and report deaths.

A host runs at most `endpoints_per_host` endpoints. A host that exits or
goes silent fails only its own endpoints (through `on_host_lost`); the pool
never restarts a host mid-run, it starts fresh ones for new endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from callmeter_events import host_lost_reason

from .. import protocol as proto
from .hostlog import HostOutput, exit_reason
from .ports import PortAllocator

log = logging.getLogger(__name__)
host_log = logging.getLogger("callmeter.host")  # the worker sends it to a rotated file
SUPPRESSED_NOTE_S = 10.0  # how often a host's dropped log lines are counted in the log

OnMessage = Callable[["EndpointHost", dict[str, Any]], Awaitable[None]]
OnHostLost = Callable[["EndpointHost", str], Awaitable[None]]


@dataclass(frozen=True)
class HostProfile:
    """What pjsua fixes per process: endpoints share a host only when these agree.

    Clock rate and drop percentages are read at library start; codec
    priorities are process-wide, so a host serves one codec list; one player
    feeds every call of a host, so a host plays one audio.
    """

    codecs: tuple[str, ...] = ("PCMU",)
    drop_tx_pct: int = 0
    drop_rx_pct: int = 0
    audio: str = ""  # WAV the host loops to every call (a file at its clock rate); "": tone

    @property
    def clock_rate(self) -> int:
        return 16_000 if "G722" in self.codecs else 8_000

    def args(self) -> list[str]:
        return [
            "--clock-rate",
            str(self.clock_rate),
            "--drop-tx-pct",
            str(self.drop_tx_pct),
            "--drop-rx-pct",
            str(self.drop_rx_pct),
        ] + (["--audio", self.audio] if self.audio else [])


def silence_verdict(ready: bool, quiet_s: float, silence_s: float, start_s: float) -> str | None:
    """Why a host that has said nothing for `quiet_s` is taken for dead, or None: once
    ready, `silence_s` without a word; before, `start_s` (a start takes seconds when the
    machine is busy, and killing it then loses its endpoints for nothing)."""
    if ready:
        return f"went silent for {silence_s:.0f} s" if quiet_s > silence_s else None
    return f"not ready {start_s:.0f} s after its start" if quiet_s > start_s else None


def slot_of(run_id: str, endpoint_id: str) -> str:
    """The name an endpoint has inside its host. Endpoint ids repeat across runs (every
    test has an A-1), and two runs' endpoints may share a host."""
    return f"{run_id}/{endpoint_id}"


@dataclass
class EndpointHost:
    host_id: str
    proc: asyncio.subprocess.Process
    sip_port: int
    rtp_base: int
    profile: HostProfile
    # slot -> (run id, endpoint id), unfinished ones; see slot_of
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)
    placed: int = 0  # endpoints ever placed; a host is never refilled past its limit
    last_heard: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False
    holds_start: bool = False  # one of the pool's start slots, until ready or lost
    output: HostOutput = field(default_factory=HostOutput)  # its stderr, rate-limited
    stderr_done: asyncio.Event = field(default_factory=asyncio.Event)
    # Messages read from the host, handed over in order by one task: while a publish
    # waits (NATS restarting), the host is still read, so it is never taken for silent.
    inbox: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    async def send(self, command: proto.Command) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()


class HostPool:
    def __init__(
        self,
        per_host: int,
        rtp_span: int,
        bind: str,
        silence_s: float,
        on_message: OnMessage,
        on_host_lost: OnHostLost,
        trace_sip: bool = False,
        tls_files: tuple[str, str] = ("", ""),
        ports: tuple[int, int] = (16_000, 60_000),
        record_dir: str = "",
        start_s: float = 20.0,
        public: str = "",
        max_starting: int = 0,
    ) -> None:
        self.per_host = per_host
        self.start_s = start_s
        self.bind = bind
        self.public = public or bind  # what peers reach the hosts at
        self.silence_s = silence_s
        self.on_message = on_message
        self.on_host_lost = on_host_lost
        self.trace_sip = trace_sip
        self.tls_files = tls_files
        self.record_dir = record_dir
        self.ports = PortAllocator(rtp_span, *ports)
        self.hosts: dict[str, EndpointHost] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        # Hosts starting at once (0: no bound). Importing pjsua2 and starting the
        # library costs ~0.2 s of CPU per host, and dozens starting together starve this
        # process and the hosts in calls; a bound keeps their share but makes starts
        # slower in all on a busy machine (bench/cps.py: at 32 calls/s, bounded to one
        # per core, callers were ready too late to keep the rate; unbounded they were
        # not). The heartbeats that starvation used to silence have their own thread.
        self._starting = asyncio.Semaphore(max_starting) if max_starting > 0 else None

    def endpoint_count(self) -> int:
        return sum(len(h.endpoints) for h in self.hosts.values())

    def _free_host(self, run_id: str, profile: HostProfile) -> EndpointHost | None:
        return next(
            (
                h
                for h in self.hosts.values()
                if not h.lost
                and h.placed < self.per_host
                and h.profile == profile
                # Not beside another run's live endpoints: direct-mode SIP users
                # (a-1, b-1) repeat across runs, and a host routes calls by user.
                and all(run == run_id for run, _ in h.endpoints.values())
            ),
            None,
        )

    async def place(
        self, run_id: str, endpoint_id: str, command: proto.StartEndpoint, profile: HostProfile
    ) -> EndpointHost:
        """Give the endpoint to a host with a free slot, starting one if needed.

        With a bound on starts, the wait for a start slot happens outside the placement
        lock: meanwhile other endpoints still go to hosts with free slots (and this one
        too, if such a host appears while it waits: the start slot is given back)."""
        holding = False  # a start slot this call acquired and has not handed to a host
        try:
            while True:
                async with self._lock:
                    host = self._free_host(run_id, profile)
                    if host is None and (self._starting is None or holding):
                        host = await self._start_host(profile)
                        host.holds_start, holding = holding, False
                    if host is not None:
                        slot = slot_of(run_id, endpoint_id)
                        host.endpoints[slot] = (run_id, endpoint_id)
                        host.placed += 1
                        break
                assert self._starting is not None
                await self._starting.acquire()  # released once its host is ready or lost
                holding = True
        finally:
            if holding and self._starting is not None:
                self._starting.release()  # not needed after all (or failed to start)
        await host.ready.wait()
        await host.send({**command, "endpoint_id": slot})
        return host

    async def _start_host(self, profile: HostProfile) -> EndpointHost:
        sip_port, rtp_base = self.ports.acquire()
        host_id = f"h{next(self._ids)}"
        argv = [
            sys.executable,
            "-m",
            "callmeter_worker.host",
            "--sip-port",
            str(sip_port),
            "--rtp-port",
            str(rtp_base),
            "--rtp-port-range",
            str(self.ports.span),
            "--host-id",
            host_id,
            "--bind",
            self.bind,
        ]
        if self.public != self.bind:
            argv += ["--public-address", self.public]
        argv += profile.args()
        if self.trace_sip:
            argv.append("--trace-sip")
        if self.record_dir:
            argv += ["--record-dir", self.record_dir]
        if all(self.tls_files):
            argv += ["--tls-cert", self.tls_files[0], "--tls-key", self.tls_files[1]]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=4 * 1024 * 1024,
        )
        host = EndpointHost(host_id, proc, sip_port, rtp_base, profile)
        self.hosts[host_id] = host
        self._spawn(self._read(host))
        self._spawn(self._read_stderr(host))
        return host

    async def _read_stderr(self, host: EndpointHost) -> None:
        """The host's stderr into the rotated host log, at most HostOutput's rate."""
        assert host.proc.stderr is not None
        next_note = time.monotonic() + SUPPRESSED_NOTE_S
        try:
            while True:
                try:
                    raw = await host.proc.stderr.readline()
                except ValueError:  # a line over the stream limit: skip what is buffered
                    raw = b"(over-long line)\n"
                if not raw:
                    break
                now = time.monotonic()
                line = host.output.feed(raw.decode(errors="replace"), now)
                if line is not None:
                    host_log.info("%s %s", host.host_id, line)
                if now >= next_note:
                    next_note = now + SUPPRESSED_NOTE_S
                    if n := host.output.take_suppressed():
                        log.warning("host %s: %d log lines over the rate dropped", host.host_id, n)
        finally:
            if n := host.output.take_suppressed():
                log.warning("host %s: %d log lines over the rate dropped", host.host_id, n)
            host.stderr_done.set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, host: EndpointHost) -> None:
        assert host.proc.stdout is not None
        delivering = asyncio.ensure_future(self._deliver(host))
        while line := await host.proc.stdout.readline():
            host.last_heard = time.monotonic()
            try:
                msg = proto.decode_line(line)
            except proto.ProtocolError as exc:
                log.warning("host %s wrote a bad line (%s): %r", host.host_id, exc, line[:200])
                continue
            if msg.get("ev") == "host_ready":
                host.ready.set()
                self._started(host)
            host.inbox.put_nowait(msg)
        code = await host.proc.wait()
        host.inbox.put_nowait(None)
        await delivering  # what it said before it exited is handed over first
        with contextlib.suppress(TimeoutError):  # its last words (an assertion) come first
            await asyncio.wait_for(host.stderr_done.wait(), 2.0)
        await self._retire(host, exit_reason(host.host_id, code, host.output.assertion))

    def _started(self, host: EndpointHost) -> None:
        """The host no longer starts (ready, or lost): the next one may."""
        if host.holds_start and self._starting is not None:
            host.holds_start = False
            self._starting.release()

    async def _deliver(self, host: EndpointHost) -> None:
        while (msg := await host.inbox.get()) is not None:
            try:
                await self.on_message(host, msg)
            except Exception:  # a bad message must not stop the reader of a whole host
                log.exception("handling %s from host %s", msg.get("ev"), host.host_id)
            if msg.get("ev") == "endpoint_finished":
                host.endpoints.pop(msg.get("endpoint_id", ""), None)
                if not host.endpoints and host.placed >= self.per_host:
                    with contextlib.suppress(ConnectionError):
                        await host.send({"op": "shutdown"})

    async def _retire(self, host: EndpointHost, reason: str) -> None:
        if host.lost:
            return
        host.lost = True
        host.ready.set()  # release anyone waiting to send to it
        self._started(host)
        if host.endpoints:
            log.error(
                "host %s lost with %d endpoints: %s", host.host_id, len(host.endpoints), reason
            )
            await self.on_host_lost(host, reason)
        self.hosts.pop(host.host_id, None)
        self.ports.release(host.rtp_base)

    async def watch(self, stop: asyncio.Event) -> None:
        """Kill hosts that went silent (no heartbeat); their endpoints are reported lost."""
        while not stop.is_set():
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for host in list(self.hosts.values()):
                quiet_s = now - host.last_heard
                how = silence_verdict(host.ready.is_set(), quiet_s, self.silence_s, self.start_s)
                if not host.lost and how is not None:
                    self._kill(host)
                    await self._retire(host, host_lost_reason(host.host_id, how))

    def _kill(self, host: EndpointHost) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.proc.pid, signal.SIGKILL)

    async def shutdown(self, timeout: float = 10.0) -> None:
        for host in list(self.hosts.values()):
            with contextlib.suppress(Exception):
                await host.send({"op": "shutdown"})
        deadline = time.monotonic() + timeout
        for host in list(self.hosts.values()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(host.proc.wait(), max(0.1, deadline - time.monotonic()))
            self._kill(host)
