"""The AsyncAPI 3.0 document of CallMeter's public NATS interface, generated from the catalogue.

`python -m callmeter_events.asyncapi > docs/asyncapi.json`; the API serves it at /asyncapi.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from .codec import EVENT_TYPES
from .streams import ALL_STREAMS

# The subject each event type is published on, as an AsyncAPI channel address.
CHANNELS: dict[str, str] = {
    "TestSaved": "callmeter.test.{test_id}.saved",
    "TestDeleted": "callmeter.test.{test_id}.deleted",
    "RunCreated": "callmeter.run.{run_id}.status.created",
    "RunQueued": "callmeter.run.{run_id}.status.queued",
    "RunRejected": "callmeter.run.{run_id}.status.rejected",
    "RunDispatching": "callmeter.run.{run_id}.status.dispatching",
    "RunStarted": "callmeter.run.{run_id}.status.started",
    "StopRequested": "callmeter.run.{run_id}.status.stop_requested",
    "RunStopping": "callmeter.run.{run_id}.status.stopping",
    "RunCompleted": "callmeter.run.{run_id}.status.completed",
    "RunFailed": "callmeter.run.{run_id}.status.failed",
    "RunSamplesStored": "callmeter.run.{run_id}.status.samples_stored",
    "RunEvaluated": "callmeter.run.{run_id}.status.evaluated",
    "EndpointAssigned": "callmeter.run.{run_id}.worker.{worker_id}.assigned",
    "ReceiverWaitExtended": "callmeter.run.{run_id}.worker.{worker_id}.wait",
    "CapacityStepJudged": "callmeter.run.{run_id}.capacity.step",
    "GeneratorOverloaded": "callmeter.run.{run_id}.worker.{worker_id}.overloaded",
    "ProbeHealthChanged": "callmeter.run.{run_id}.probe.{probe_id}.health",
    "MetricSample": "callmeter.metrics.{run_id}.{endpoint_id}",
    "MetricBatch": "callmeter.metrics.{run_id}.batch.{worker_id}",
    "SipMessage": "callmeter.trace.{run_id}.{endpoint_id}",
    "PlatformOutage": "callmeter.run.platform.outage.{component}",
    # Names are hex-encoded in subjects (a project may hold spaces and dots).
    "OrganisationCreated": "callmeter.access.org.{org_hex}",
    "OrganisationDeleted": "callmeter.access.org_deleted.{org_hex}",
    "ProjectCreated": "callmeter.access.project.{project_hex}",
    "UserCreated": "callmeter.access.user.{username_hex}",
    "PasswordChanged": "callmeter.access.user.{username_hex}",
    "MembershipSet": "callmeter.access.member.{org_hex}",
    "ApiKeyCreated": "callmeter.access.key.{key_id}",
    "ApiKeyRevoked": "callmeter.access.key.{key_id}",
    "AuditRecorded": "callmeter.access.audit.{action}",
}
for _cls in EVENT_TYPES:
    _token = getattr(_cls, "token", "")
    if _cls.__name__ not in CHANNELS and "run_id" in _cls.model_fields and _token:
        CHANNELS[_cls.__name__] = f"callmeter.run.{{run_id}}.endpoint.{{endpoint_id}}.{_token}"
    elif _cls.__name__ not in CHANNELS and _token:
        CHANNELS[_cls.__name__] = f"callmeter.worker.{{worker_id}}.{_token}"

VERSION = "1.0.0"


def document() -> dict[str, Any]:
    """AsyncAPI 3.0: one channel and one receive operation per event type."""
    _, schemas = models_json_schema(
        [(cls, "serialization") for cls in EVENT_TYPES], ref_template="#/components/schemas/{model}"
    )
    streams = {sd.name: list(sd.subjects) for sd in ALL_STREAMS}
    channels, operations, messages = {}, {}, {}
    for cls in EVENT_TYPES:
        name = cls.__name__
        address = CHANNELS[name]
        params = {
            p.strip("{}"): {"description": p.strip("{}")}
            for p in address.split(".")
            if p.startswith("{")
        }
        channels[name] = {
            "address": address,
            "parameters": params,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "description": f"JetStream stream {cls.stream}",
        }
        operations[f"on{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": (cls.__doc__ or name).strip().splitlines()[0],
        }
        messages[name] = {
            "name": name,
            "contentType": cls.content_type,
            "headers": {"type": "object", "properties": {"Nats-Msg-Id": {"type": "string"}}},
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CallMeter events",
            "version": VERSION,
            "description": (
                "The public, versioned NATS interface of CallMeter. Subscribe with wildcards, "
                "e.g. `callmeter.run.<run_id>.>` for everything of one run. Every payload "
                "carries `type` and `schema_version`; fields are only ever added. Streams: "
                + json.dumps(streams)
            ),
        },
        "servers": {"nats": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.get("$defs", {})},
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, sort_keys=True))
