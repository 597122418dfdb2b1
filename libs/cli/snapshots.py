"""JetStream stream snapshots and restores through the JetStream API.

A snapshot ($JS.API.STREAM.SNAPSHOT) arrives as chunks on a subject of ours, each
acknowledged (the server's flow control), ended by an empty message. A restore
($JS.API.STREAM.RESTORE) names a subject we send the chunks to, each a request the
server answers, then an empty request that ends it; the stream comes back with its
messages, sequence numbers and consumers as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

CHUNK = 128 * 1024
API_TIMEOUT_S = 30.0


class SnapshotError(RuntimeError):
    pass


async def _api(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=API_TIMEOUT_S)
    answer: dict[str, Any] = json.loads(reply.data)
    if answer.get("error"):
        raise SnapshotError(f"{subject}: {answer['error'].get('description', answer['error'])}")
    return answer


async def snapshot_stream(nc: Client, stream: str, path: Path) -> dict[str, Any]:
    """Write the stream's snapshot (messages and consumers) to `path`; its config,
    state, size and sha256 for the manifest."""
    info = await _api(nc, f"$JS.API.STREAM.INFO.{stream}", {})
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as out:

        async def on_chunk(msg: Msg) -> None:
            nonlocal size
            if done.done():
                return
            status = (msg.headers or {}).get("Status")
            if status and status not in ("204", "100"):
                done.set_exception(SnapshotError(f"snapshot of {stream}: status {status}"))
                return
            if not msg.data:  # the end
                done.set_result(None)
                return
            out.write(msg.data)
            digest.update(msg.data)
            size += len(msg.data)
            if msg.reply:
                await nc.publish(msg.reply, b"")  # ack: the server sends more

        sub = await nc.subscribe(inbox, cb=on_chunk)
        try:
            await _api(
                nc,
                f"$JS.API.STREAM.SNAPSHOT.{stream}",
                {"deliver_subject": inbox, "chunk_size": CHUNK, "no_consumers": False},
            )
            await asyncio.wait_for(done, timeout=600)
        finally:
            await sub.unsubscribe()
    return {
        "stream": stream,
        "file": path.name,
        "bytes": size,
        "sha256": digest.hexdigest(),
        "config": info["config"],
        "state": info["state"],
    }


async def restore_stream(nc: Client, entry: dict[str, Any], path: Path) -> dict[str, Any]:
    """Restore one stream from its snapshot file (the stream must not exist yet)."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SnapshotError(f"{path.name}: checksum differs from the manifest (corrupt backup?)")
    stream = entry["stream"]
    answer = await _api(
        nc, f"$JS.API.STREAM.RESTORE.{stream}", {"config": entry["config"], "state": entry["state"]}
    )
    target = answer["deliver_subject"]
    for start in range(0, len(data), CHUNK):
        await nc.request(target, data[start : start + CHUNK], timeout=API_TIMEOUT_S)
    reply = await nc.request(target, b"", timeout=600)
    result: dict[str, Any] = json.loads(reply.data) if reply.data else {}
    if result.get("error"):
        raise SnapshotError(f"restore of {stream}: {result['error'].get('description')}")
    return result
