"""A platform started in the foreground (`make run`, `callmeter up ...`), as a terminal
would: its own process group, output to a file, Ctrl-C to stop, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil


@dataclass
class Job:
    """A foreground job in its own process group (`start_new_session=True`)."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int  # the UI's
    name: str = "make run"  # in messages
    seen: dict[int, psutil.Process] = field(default_factory=dict)  # for kill()

    def wait_up(self, timeout: float = 300) -> None:  # a first make run may pip install
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.output()}"
            self.processes()
            if "CallMeter is up: http://127.0.0.1:" in self.output():
                # The login page: open whether or not the installation is claimed.
                page = httpx.get(f"http://127.0.0.1:{self.port}/login", timeout=10)
                assert page.status_code == 200 and "<html" in page.text.lower()
                return
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not up after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """The job and everything under it now (services keep it as their ancestor)."""
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            found = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        self.seen.update((p.pid, p) for p in found)
        return found

    def ctrl_c(self) -> None:
        """SIGINT to the job, as Ctrl-C does; everything it started must be gone."""
        started = self.processes()
        assert len(started) > 5, [p.cmdline() for p in started]
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(90)
        _, alive = psutil.wait_procs(started, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", self.port)) != 0, "the UI still answers"
        assert "stopping..." in self.output()

    def kill(self) -> None:
        """Cleanup after a failure: nothing it started may outlive the test, even
        what the job's exit left orphaned."""
        self.processes()
        for p in list(self.seen.values()):
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in [*p.children(True), p]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
