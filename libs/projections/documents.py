"""Projection states as JSON documents and back: read-model rows and snapshots share them.

`to_doc` is deterministic (sorted keys), so a rebuild compares equal byte for byte;
`run_state` / `endpoint_state` invert it, so a service can resume from a document
instead of folding the whole log again (tests check the round trip).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from callmeter_events import (
    CapacityStepJudged,
    GeneratorOverloaded,
    RunEvaluated,
    TestDefinition,
)

from .endpoints import EndpointState
from .outages import Outage
from .runs import RunState, StatusChange
from .tests import TestState


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_doc(state: Any) -> dict[str, Any]:
    """A deterministic JSON document of a projection state (rebuilds compare equal)."""
    return json.loads(json.dumps(_plain(state), sort_keys=True))


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def run_state(doc: dict[str, Any]) -> RunState:
    evaluation = doc.get("evaluation")
    return RunState(
        **{
            **doc,
            "definition": TestDefinition.model_validate(doc["definition"]),
            "created_at": _when(doc["created_at"]),
            "started_at": _when(doc["started_at"]),
            "finished_at": _when(doc["finished_at"]),
            "worker_ids": tuple(doc["worker_ids"]),
            "history": tuple(
                StatusChange(h["status"], datetime.fromisoformat(h["at"]), h["reason"])
                for h in doc["history"]
            ),
            "evaluation": RunEvaluated.model_validate(evaluation) if evaluation else None,
            "callers_assigned_at": _when(doc.get("callers_assigned_at")),
            "capacity_steps": tuple(
                CapacityStepJudged.model_validate(c) for c in doc.get("capacity_steps", ())
            ),
            "overloads": tuple(
                GeneratorOverloaded.model_validate(o) for o in doc.get("overloads", ())
            ),
            "outages": tuple(
                Outage(
                    o["component"],
                    datetime.fromisoformat(o["started_at"]),
                    datetime.fromisoformat(o["ended_at"]),
                    tuple(o.get("reporters", ())),
                )
                for o in doc.get("outages", ())
            ),
        }
    )


def endpoint_state(doc: dict[str, Any]) -> EndpointState:
    return EndpointState(**{**doc, "finished_at": _when(doc["finished_at"])})


def saved_test(doc: dict[str, Any]) -> TestState:
    return TestState(
        **{
            **doc,
            "definition": TestDefinition.model_validate(doc["definition"]),
            "created_at": datetime.fromisoformat(doc["created_at"]),
            "updated_at": datetime.fromisoformat(doc["updated_at"]),
        }
    )
