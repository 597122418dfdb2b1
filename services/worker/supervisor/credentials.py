"""A run's SIP password, fetched when the endpoint starts, sealed for this process only.

The assignment carries the password's reference; the API answers a request
(callmeter_events.credentials) with the password sealed to this process's X25519 key,
which is made at start and never leaves memory. The password goes to the endpoint
host over its stdin pipe and is never logged.
"""

from __future__ import annotations

import asyncio
import time

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from callmeter_common import crypto
from callmeter_common.bus import Bus
from callmeter_events import (
    CREDENTIAL_SUBJECT,
    CredentialReply,
    CredentialRequest,
    EndpointAssigned,
)

ANSWER_WAIT_S = 15.0  # the API may wait up to 10 s for the assignment to be folded
GIVE_UP_S = 60.0  # no API answering (restarting?) this long: the endpoint fails


class CredentialError(RuntimeError):
    """Why an endpoint got no password (the API's reason, or no answer)."""


class Credentials:
    def __init__(self, bus: Bus, worker_id: str) -> None:
        self.bus = bus
        self.worker_id = worker_id
        self._private = crypto.new_private_key()
        self.public_key = crypto.public_key_text(self._private)

    async def password(self, event: EndpointAssigned) -> str:
        account = event.config.account
        assert account is not None and account.password_ref is not None
        req = CredentialRequest(
            run_id=event.run_id,
            endpoint_id=event.endpoint_id,
            worker_id=self.worker_id,
            ref=account.password_ref,
            public_key=self.public_key,
        )
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            try:
                msg = await self.bus.nc.request(
                    CREDENTIAL_SUBJECT, req.model_dump_json().encode(), timeout=ANSWER_WAIT_S
                )
                break
            except (NatsTimeout, NoRespondersError) as exc:
                if time.monotonic() > deadline:
                    raise CredentialError(f"no API answered ({type(exc).__name__})") from None
                await asyncio.sleep(1.0)
        reply = CredentialReply.model_validate_json(msg.data)
        if reply.sealed is None:
            raise CredentialError(reply.error or "refused")
        try:
            return crypto.open_sealed(self._private, reply.sealed, req.aad()).decode()
        except crypto.CryptoError as exc:
            raise CredentialError(str(exc)) from None
