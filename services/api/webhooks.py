"""Webhooks: POST each run status change to the test's URLs, and each probe health
change (ProbeHealthChanged) to its project's URLs; signed, retried, logged.

The body is the event JSON; `X-CallMeter-Signature: sha256=<hex>` is the
HMAC-SHA256 of the body with the webhook's secret. Failed deliveries are
retried with exponential backoff; every attempt is a row in webhook_deliveries
(the delivery log), and a delivery that succeeded is never sent again, even
after a restart re-folds the log.

Every API replica folds every event, so each would send each webhook: a
replica first claims the (event, url) in webhook_claims, for as long as its
next attempt and backoff can take, and renews the claim before each attempt.
Only the claim's owner sends; if it dies, its claim runs out and the next
replica to see the event (a restart re-folds the log) takes the delivery over.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
import uuid
from typing import Any

import httpx
import psycopg

from callmeter_events import (
    Event,
    ProbeHealthChanged,
    RunCompleted,
    RunEvaluated,
    RunFailed,
    RunQueued,
    RunRejected,
    RunStarted,
    RunStopping,
    encode,
)
from callmeter_storage import probes, secrets

log = logging.getLogger(__name__)

STATUS_EVENTS = (
    RunQueued,
    RunRejected,
    RunStarted,
    RunStopping,
    RunCompleted,
    RunFailed,
    RunEvaluated,
)


HTTP_TIMEOUT_S = 10.0
# Take (event, url) for `lease` seconds unless another owner holds it still; renews our own.
_CLAIM = """
INSERT INTO webhook_claims AS c (event_id, url, owner, until)
VALUES (%(event)s, %(url)s, %(owner)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (event_id, url) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
  WHERE c.owner = EXCLUDED.owner OR c.until < now()
RETURNING owner"""


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempt: int, base: float) -> float:
    """1, 2, 4, 8 ... times the base, capped at 5 minutes."""
    return float(min(300.0, base * 2 ** (attempt - 1)))


class Webhooks:
    def __init__(
        self,
        database_url: str,
        runs: Any,
        default_secret: str = "",
        master_key: bytes = b"",
        attempts: int = 6,
        base_delay_s: float = 1.0,
    ) -> None:
        self.database_url = database_url
        self.runs = runs
        self.default_secret = default_secret
        self.master_key = master_key
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        # (event, url, the reference of the webhook's secret or None: the default)
        self.queue: asyncio.Queue[tuple[Event, str, str | None]] = asyncio.Queue()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def observe(self, event: Event) -> None:
        if isinstance(event, ProbeHealthChanged):
            self.queue.put_nowait((event, "", None))  # "": its project's, read when sent
            return
        if not isinstance(event, STATUS_EVENTS):
            return
        run = self.runs.runs.get(event.run_id)
        if run is None:
            return
        for hook in run.definition.webhooks:
            self.queue.put_nowait((event, hook.url, hook.secret_ref))

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            while not stop.is_set():
                event, url, secret_ref = await self.queue.get()
                if not url and isinstance(event, ProbeHealthChanged):
                    hooks = await asyncio.to_thread(self._project_hooks, event.project)
                    for hook in hooks:
                        self.queue.put_nowait((event, hook["url"], hook["secret_ref"]))
                    continue
                # Keep a reference: the loop holds tasks only weakly, and a delivery
                # waiting out its backoff must not be collected mid-retry.
                task = asyncio.ensure_future(self.deliver(http, event, url, secret_ref))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    def _secret(self, secret_ref: str | None) -> str:
        """The signing secret, read from the secret store only for this delivery.
        A shredded one (its test deleted) signs with the default."""
        if secret_ref is None:
            return self.default_secret
        with psycopg.connect(self.database_url) as conn:
            found = secrets.get(conn, self.master_key, secret_ref)
        return found.value if found is not None else self.default_secret

    async def deliver(
        self, http: httpx.AsyncClient, event: Event, url: str, secret_ref: str | None
    ) -> None:
        if await asyncio.to_thread(self._delivered, event.event_id, url):
            return
        secret = await asyncio.to_thread(self._secret, secret_ref)
        body = encode(event)
        headers = {
            "Content-Type": "application/json",
            "X-CallMeter-Event": type(event).__name__,
            "X-CallMeter-Delivery": event.event_id,
            "X-CallMeter-Signature": signature(secret, body),
        }
        for attempt in range(1, self.attempts + 1):
            # Long enough for this attempt and the backoff after it; renewed each time.
            lease = HTTP_TIMEOUT_S + backoff_s(attempt, self.base_delay_s) + 30
            if not await asyncio.to_thread(self._claim, event.event_id, url, lease):
                return  # another replica is delivering it
            status, error = None, ""
            try:
                resp = await http.post(url, content=body, headers=headers)
                status = resp.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            ok = status is not None and 200 <= status < 300
            await asyncio.to_thread(self._log, event, url, attempt, status, error, ok)
            if ok:
                return
            await asyncio.sleep(backoff_s(attempt, self.base_delay_s))
        log.warning(
            "webhook %s gave up after %d attempts for %s", url, self.attempts, event.event_id
        )

    def _project_hooks(self, project: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url) as conn:
            return probes.project_webhooks(conn, project)

    def _claim(self, event_id: str, url: str, lease_s: float) -> bool:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                _CLAIM, {"event": event_id, "url": url, "owner": self.owner, "lease": lease_s}
            ).fetchone()
        return row is not None

    def _delivered(self, event_id: str, url: str) -> bool:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT 1 FROM webhook_deliveries WHERE event_id = %s AND url = %s AND ok",
                (event_id, url),
            ).fetchone()
        return row is not None

    def _log(
        self, event: Event, url: str, attempt: int, status: int | None, error: str, ok: bool
    ) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO webhook_deliveries (run_id, event_id, event_type, url, attempt,"
                " status_code, error, ok) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    getattr(event, "run_id", None),
                    event.event_id,
                    type(event).__name__,
                    url,
                    attempt,
                    status,
                    error[:500],
                    ok,
                ),
            )


def deliveries(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """The delivery log of one run, oldest first."""
    rows = conn.execute(
        "SELECT event_type, url, attempt, status_code, error, ok, attempted_at"
        " FROM webhook_deliveries WHERE run_id = %s ORDER BY attempted_at, id",
        (run_id,),
    ).fetchall()
    keys = ("event_type", "url", "attempt", "status_code", "error", "ok", "attempted_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]
