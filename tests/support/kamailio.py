"""A real Kamailio (Debian `kamailio`) as registrar + proxy for tests.

The project's config (infra/kamailio/kamailio.cfg) is copied into a temp
dir next to a db_text directory holding the test accounts; Kamailio runs in
the foreground (-DD -E) in its own process group on a free port (UDP and TCP
on the same number) and is killed with its children at teardown.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from callmeter_common.procs import spawn, stop_group

CONFIG = Path(__file__).resolve().parents[2] / "infra" / "kamailio" / "kamailio.cfg"
DOMAIN = "callmeter.test"
# kamailio 5.6's subscriber table schema version (auth_db refuses other versions)
_VERSION = "table_name(str) table_version(int)\nsubscriber:7\n"
_SUBSCRIBER_HEADER = (
    "id(int,auto) username(str) domain(str,null) password(str) ha1(str,null) ha1b(str,null)\n"
)


def _free_port_both() -> int:
    """A port free for UDP and TCP at once (Kamailio listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no port free for both UDP and TCP")


def _tls_module_installed() -> bool:
    out = subprocess.run(["kamailio", "-I"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():  # "Default paths to modules: /usr/lib/.../kamailio/modules"
        if line.strip().startswith("Default paths to modules:"):
            dirs = line.split(":", 1)[1].strip().split(":")
            return any((Path(d) / "tls.so").exists() for d in dirs)
    return False


def options_ping(host: str, port: int, timeout: float = 0.5) -> str | None:
    """Send one SIP OPTIONS over UDP; the status line of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        lport, tag = s.getsockname()[1], uuid.uuid4().hex[:8]
        msg = (
            f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{DOMAIN}>;tag={tag}\r\nTo: <sip:ping@{DOMAIN}>\r\n"
            f"Call-ID: {tag}@probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), (host, port))
        try:
            data = s.recv(65535)
        except OSError:
            return None
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


class Kamailio:
    """One running Kamailio with the given accounts {username: password}."""

    def __init__(
        self,
        workdir: Path,
        accounts: dict[str, str],
        tls: tuple[str, str] | None = None,
        max_dialogs: int | None = None,
    ) -> None:
        """`tls`: (certificate, private key) PEM files: also listen for SIP over TLS.
        `max_dialogs`: refuse INVITEs with 503 while that many calls are in progress."""
        if shutil.which("kamailio") is None:
            pytest.skip("kamailio not installed (Debian package: kamailio)")
        if tls is not None and not _tls_module_installed():
            pytest.skip("kamailio tls module not installed (Debian: kamailio-tls-modules)")
        self.dir, self.accounts, self.tls = workdir, dict(accounts), tls
        self.max_dialogs = max_dialogs
        self.host, self.port, self.domain = "127.0.0.1", _free_port_both(), DOMAIN
        self.tls_port = _free_port_both() if tls else None
        db = workdir / "dbtext"
        db.mkdir(parents=True, exist_ok=True)
        (db / "version").write_text(_VERSION)
        rows = "".join(f"{i}:{u}:{DOMAIN}:{p}:::\n" for i, (u, p) in enumerate(accounts.items(), 1))
        (db / "subscriber").write_text(_SUBSCRIBER_HEADER + rows)
        self.cfg = workdir / "kamailio.cfg"
        shutil.copy(CONFIG, self.cfg)
        self.log = workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.db = db

    def start(self, timeout: float = 20.0) -> None:
        argv = [
            "kamailio",
            "-f",
            str(self.cfg),
            "-DD",
            "-E",
            "-m",
            "32",
            "-M",
            "8",
            "-l",
            f"udp:{self.host}:{self.port}",
            "-l",
            f"tcp:{self.host}:{self.port}",
            "-A",
            f'DBURL="text://{self.db}"',
            "-Y",
            str(self.dir),
        ]
        if self.max_dialogs is not None:
            argv += ["-A", f"MAX_DIALOGS={self.max_dialogs}"]
        if self.tls is not None:
            argv += [
                "-A",
                "WITH_TLS",
                "-A",
                f'TLS_CERT="{self.tls[0]}"',
                "-A",
                f'TLS_KEY="{self.tls[1]}"',
                "-l",
                f"tls:{self.host}:{self.tls_port}",
            ]
        self.proc = spawn(argv, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited: {self.log.read_text()[-2000:]}")
            if options_ping(self.host, self.port):
                return
        raise TimeoutError(f"kamailio not answering on {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=5)
            self.proc = None

    def registrar(self, transport: str = "udp") -> dict[str, object]:
        """The test definition's `registrar` block for this server."""
        port = self.tls_port if transport == "tls" else self.port
        return {"host": self.host, "port": port, "transport": transport, "domain": DOMAIN}

    def aor(self, user: str) -> str:
        return f"sip:{user}@{DOMAIN}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def register_contact(self, user: str, contact: str, expires_s: int = 3600) -> str:
        """REGISTER `contact` for `user` (an account) with digest auth, the way a phone
        would, so a peer that cannot register itself (SIPp's UAS) gets calls for the
        AOR. Returns the final status line."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(2.0)
            lport, call_id = s.getsockname()[1], uuid.uuid4().hex
            auth, status = "", ""
            for cseq in (1, 2):
                branch = uuid.uuid4().hex[:12]
                msg = (
                    f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{branch}\r\n"
                    f"From: <sip:{user}@{DOMAIN}>;tag={call_id[:8]}\r\n"
                    f"To: <sip:{user}@{DOMAIN}>\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\n"
                    f"Expires: {expires_s}\r\nMax-Forwards: 70\r\n{auth}"
                    "Content-Length: 0\r\n\r\n"
                )
                s.sendto(msg.encode(), (self.host, self.port))
                reply = s.recv(65535).decode(errors="replace")
                status = reply.split("\r\n", 1)[0]
                if " 401 " not in status:
                    return status
                challenge = next(
                    h for h in reply.split("\r\n") if h.lower().startswith("www-authenticate")
                )
                realm = challenge.split('realm="', 1)[1].split('"', 1)[0]
                nonce = challenge.split('nonce="', 1)[1].split('"', 1)[0]
                uri = f"sip:{DOMAIN}"

                def md5(text: str) -> str:
                    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - SIP digest

                ha1 = md5(f"{user}:{realm}:{self.accounts[user]}")
                response = md5(f"{ha1}:{nonce}:{md5(f'REGISTER:{uri}')}")
                auth = (
                    f'Authorization: Digest username="{user}", realm="{realm}", '
                    f'nonce="{nonce}", uri="{uri}", response="{response}", algorithm=MD5\r\n'
                )
            return status


@contextmanager
def running_kamailio(accounts: dict[str, str], **options: Any) -> Iterator[Kamailio]:
    """A started Kamailio (options as Kamailio's) in a directory of its own, stopped and
    removed afterwards, whatever the test did."""
    workdir = Path(tempfile.mkdtemp(prefix="kamailio-"))
    try:
        server = Kamailio(workdir, accounts, **options)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def accounts(prefix: str, n: int, password: str = "pw") -> dict[str, str]:
    """n test accounts `<prefix>1..n` sharing one password."""
    return {f"{prefix}{i}": f"{password}-{prefix}{i}" for i in range(1, n + 1)}
