"""Where the scheduler and the dispatcher keep their fold snapshots: a JetStream object store.

Why JetStream and not PostgreSQL: both services talk only to NATS today, and a
snapshot names a position in a JetStream stream, so it lives beside that stream
and adds no dependency (a database outage does not stop the run lifecycle). An
object store rather than a KV bucket: a snapshot of a few large active runs can
exceed the server's message size, and the object store chunks it. The API's
projector needs no snapshot here: its read-model rows are its state, stored with
their position in one transaction (callmeter_storage.readmodels).
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

log = logging.getLogger(__name__)

BUCKET = "CALLMETER_SNAPSHOTS"


class SnapshotStore:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @classmethod
    async def open(cls, js: JetStreamContext) -> SnapshotStore:
        try:
            return cls(await js.object_store(BUCKET))
        except BucketNotFoundError:
            config = api.ObjectStoreConfig(storage=api.StorageType.FILE)
            return cls(await js.create_object_store(BUCKET, config=config))

    async def load(self, name: str) -> bytes | None:
        try:
            result = await self.store.get(name)
        except NotFoundError:  # the object store's not-found errors derive from it
            return None
        return result.data

    async def save(self, name: str, data: bytes) -> None:
        await self.store.put(name, data)
