"""The one request/reply exchange outside the streams: a worker asks for a credential.

An EndpointAssigned carries only the reference of its account's password. The worker
asks the API (core NATS request on CREDENTIAL_SUBJECT, which no stream captures) with
the X25519 public key of its process (the key it announces in WorkerOnline and its
heartbeats); the API checks that this is the key the worker announced, that the
endpoint is assigned to that worker and that the reference is one of its run's
accounts, and answers with the password sealed to that key (callmeter_common.crypto.seal). The clear password exists
only in the API's memory while it seals and in the worker process's memory.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .testdef import SecretRef

CREDENTIAL_SUBJECT = "callmeter.credential.request"


class CredentialRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1, max_length=64)
    endpoint_id: str = Field(min_length=1, max_length=64)
    worker_id: str = Field(min_length=1, max_length=200)
    ref: SecretRef
    public_key: str = Field(min_length=1, max_length=100)  # base64 X25519

    def aad(self) -> bytes:
        """What the sealed credential is bound to: it opens for this endpoint only."""
        return f"{self.run_id}/{self.endpoint_id}/{self.ref}".encode()


class CredentialReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sealed: str | None = None  # crypto.seal(public_key, password, request.aad())
    error: str | None = None  # why not (unknown run, not this worker's endpoint, shredded)
