"""Answers workers' credential requests (callmeter_events.credentials): sealed, never clear.

`decide` is the pure check; `serve` subscribes (queue group: one API process answers
each request) and seals. The run's read model may not have folded the assignment
yet when the worker asks: the answer waits for it a little.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from nats.aio.msg import Msg
from pydantic import ValidationError

from callmeter_common import crypto
from callmeter_events import CREDENTIAL_SUBJECT, CredentialReply, CredentialRequest
from callmeter_projections.runs import RunsProjection
from callmeter_projections.workers import WorkerState

from .deps import Platform
from .secret_store import reveal

log = logging.getLogger(__name__)
ASSIGNMENT_WAIT_S = 10.0


def decide(
    runs: RunsProjection, workers: Mapping[str, WorkerState], req: CredentialRequest
) -> tuple[str | None, str | None]:
    """(the run's project, None) when the request is legitimate, else (None, why not):
    the endpoint is assigned to that worker, which announced that public key."""
    worker = workers.get(req.worker_id)
    if worker is None or not worker.public_key or worker.public_key != req.public_key:
        return None, f"the public key is not the one worker {req.worker_id} announced"
    run = runs.runs.get(req.run_id)
    ep = runs.endpoints.get(req.run_id, {}).get(req.endpoint_id)
    if run is None or ep is None:
        return None, f"no endpoint {req.endpoint_id} in run {req.run_id}"
    if ep.worker_id != req.worker_id:
        return None, f"endpoint {req.endpoint_id} is not assigned to worker {req.worker_id}"
    if ep.outcome is not None:
        return None, f"endpoint {req.endpoint_id} has finished"
    group = next(g for g in run.definition.groups if g.name == ep.group)
    if req.ref not in {a.password_ref for a in group.accounts}:
        return None, f"{req.ref} is not an account of group {ep.group}"
    return run.definition.project, None


async def answer(p: Platform, req: CredentialRequest) -> CredentialReply:
    runs, workers = p.projector.models.runs, p.projector.workers
    deadline = time.monotonic() + ASSIGNMENT_WAIT_S
    project, why = decide(runs, workers, req)
    while project is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # the assignment may not be folded yet
        project, why = decide(runs, workers, req)
    if project is None:
        return CredentialReply(error=why)
    secret = await reveal(p, req.ref)
    if secret is None or secret.project != project or secret.kind != "sip_password":
        return CredentialReply(error=f"{req.ref}: no such secret (deleted?)")
    try:
        sealed = crypto.seal(req.public_key, secret.value.encode(), req.aad())
    except crypto.CryptoError as exc:
        return CredentialReply(error=str(exc))
    return CredentialReply(sealed=sealed)


async def serve(p: Platform) -> None:
    """Answer every credential request until the connection closes."""
    pending: set[asyncio.Future[None]] = set()  # answers may wait: one task each

    async def on_request(msg: Msg) -> None:
        task = asyncio.ensure_future(handle(msg))
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def handle(msg: Msg) -> None:
        try:
            req = CredentialRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            reply = CredentialReply(error=f"bad request: {exc.error_count()} errors")
        else:
            reply = await answer(p, req)
            if reply.error:
                log.warning(
                    "credential for %s/%s refused: %s", req.run_id, req.endpoint_id, reply.error
                )
        await msg.respond(reply.model_dump_json().encode())

    await p.bus.nc.subscribe(CREDENTIAL_SUBJECT, queue="api", cb=on_request)
