"""Saved test definitions folded from TestSaved / TestDeleted."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from callmeter_events import Event, TestDefinition, TestDeleted, TestSaved


@dataclass(frozen=True)
class TestState:
    test_id: str
    definition: TestDefinition
    created_at: datetime
    updated_at: datetime
    revision: int = 1
    deleted: bool = False


def apply_test(event: Event, test: TestState | None) -> TestState | None:
    if isinstance(event, TestSaved):
        if test is None:
            return TestState(event.test_id, event.definition, event.occurred_at, event.occurred_at)
        return replace(
            test,
            definition=event.definition,
            updated_at=event.occurred_at,
            revision=test.revision + 1,
            deleted=False,
        )
    if isinstance(event, TestDeleted) and test is not None:
        return replace(test, deleted=True, updated_at=event.occurred_at)
    return test
