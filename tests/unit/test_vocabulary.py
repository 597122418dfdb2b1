"""The vocabulary is one set of StrEnums that behave exactly as the strings they replaced."""

import json

import pytest

from callmeter_events import (
    OUTCOMES,
    PHASES,
    TERMINAL_STATUSES,
    Direction,
    EndpointFinished,
    Outcome,
    Phase,
    RunStatus,
    decode,
    encode,
)


@pytest.mark.parametrize("enum", [RunStatus, Phase, Outcome, Direction])
def test_every_member_is_named_as_its_value(enum):
    # psycopg dumps an Enum by its *name*; StrEnum compares by value: both must agree.
    assert all(m.name == m.value for m in enum)


def test_members_compare_hash_and_serialise_as_their_strings():
    assert RunStatus.RUNNING == "RUNNING" and "RUNNING" in {RunStatus.RUNNING}
    assert f"{Phase.INCALL}" == "INCALL" and json.dumps(Outcome.SUCCESS) == '"SUCCESS"'
    assert TERMINAL_STATUSES == {"COMPLETED", "FAILED", "CANNOT_RUN_FOR_NOW"}


def test_phases_and_outcomes_keep_their_documented_order():
    assert PHASES[0] == "INITIALIZING" and PHASES[-1] == "CLOSED"
    assert OUTCOMES[0] == "SUCCESS" and OUTCOMES[-1] == "OSERROR"


def test_an_event_round_trips_with_the_enum_and_the_wire_form_is_unchanged():
    event = EndpointFinished(run_id="r", endpoint_id="A-1", outcome=Outcome.CALL_FAILED)
    wire = json.loads(encode(event))
    assert wire["outcome"] == "CALL_FAILED"
    back = decode(encode(event))
    assert back.outcome is Outcome.CALL_FAILED


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="outcome"):
        EndpointFinished(run_id="r", endpoint_id="A-1", outcome="EXPLODED")
