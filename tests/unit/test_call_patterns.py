"""Call patterns on a group: single (default), repeat and rate; each bad field is named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callmeter_events import RatePattern, RepeatPattern, SinglePattern, TestDefinition


def _definition(pattern: dict | None, callers: int = 8, receivers: int = 8) -> TestDefinition:
    group: dict = {"name": "a", "endpoints": callers, "calls": "b"}
    if pattern is not None:
        group["pattern"] = pattern
    return TestDefinition.model_validate(
        {
            "name": "t",
            "duration_s": 10,
            "groups": [group, {"name": "b", "endpoints": receivers}],
        }
    )


def _error(pattern: dict, **kw: int) -> str:
    with pytest.raises(ValidationError) as info:
        _definition(pattern, **kw)
    return str(info.value)


def test_default_is_one_call_per_endpoint() -> None:
    assert isinstance(_definition(None).groups[0].pattern, SinglePattern)


def test_repeat_and_rate_parse() -> None:
    repeat = _definition({"kind": "repeat", "hold_s": 2, "pause_s": 1, "calls": 3})
    assert repeat.groups[0].pattern == RepeatPattern(kind="repeat", hold_s=2, pause_s=1, calls=3)
    rate = _definition({"kind": "rate", "cps": 2, "cps_end": 4, "ramp_s": 5, "hold_s": 1})
    p = rate.groups[0].pattern
    assert isinstance(p, RatePattern) and p.peak_cps() == 4
    steps = _definition(
        {"kind": "rate", "steps": [{"at_s": 0, "cps": 1}, {"at_s": 5, "cps": 3}], "hold_s": 1}
    )
    assert steps.groups[0].pattern.peak_cps() == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pattern", "field"),
    [
        ({"kind": "repeat", "hold_s": 0}, "hold_s"),
        ({"kind": "repeat", "hold_s": 1, "pause_s": -1}, "pause_s"),
        ({"kind": "repeat", "hold_s": 1, "calls": 0}, "calls"),
        ({"kind": "rate", "hold_s": 1}, "cps"),
        ({"kind": "rate", "cps": 1, "steps": [{"at_s": 0, "cps": 1}], "hold_s": 1}, "cps"),
        ({"kind": "rate", "cps": 1, "cps_end": 2, "hold_s": 1}, "ramp_s"),
        ({"kind": "rate", "cps": 1, "ramp_s": 2, "hold_s": 1}, "cps_end"),
        ({"kind": "rate", "steps": [{"at_s": 1, "cps": 1}], "hold_s": 1}, "steps.0.at_s"),
        (
            {"kind": "rate", "steps": [{"at_s": 0, "cps": 1}, {"at_s": 0, "cps": 2}], "hold_s": 1},
            "steps.1.at_s",
        ),
        ({"kind": "rate", "cps": 1, "hold": "uniform", "hold_s": 1}, "hold"),
        ({"kind": "rate", "cps": 1}, "hold_s"),
        ({"kind": "burst", "cps": 1}, "pattern"),
    ],
)
def test_bad_fields_are_named(pattern: dict, field: str) -> None:
    assert field in _error(pattern)


def test_rate_must_fit_the_hosts() -> None:
    # 8 endpoints in 2 hosts: 40 calls/s is 20 per host, over the budget
    message = _error({"kind": "rate", "cps": 40, "hold_s": 0.1})
    assert "Value error, endpoints: 20 calls/s per endpoint host" in message
    message = _error({"kind": "repeat", "hold_s": 0.1}, callers=4, receivers=4)
    assert "pattern.hold_s" in message
    # The smallest float as a hold is an infinite rate: a clear error, not an OverflowError
    # (schemathesis found the 500).
    message = _error({"kind": "repeat", "hold_s": 5e-324}, callers=4, receivers=4)
    assert "pattern.hold_s" in message and "longer hold_s or pause_s" in message


def test_receivers_must_cover_the_callers() -> None:
    message = _error({"kind": "repeat", "hold_s": 2}, callers=8, receivers=4)
    assert "groups.0.pattern" in message and "at least 8" in message


def test_only_a_calling_group_has_a_pattern() -> None:
    with pytest.raises(ValidationError, match="groups.1.pattern"):
        TestDefinition.model_validate(
            {
                "name": "t",
                "duration_s": 10,
                "groups": [
                    {"name": "a", "endpoints": 1, "calls": "b"},
                    {"name": "b", "endpoints": 1, "pattern": {"kind": "repeat", "hold_s": 1}},
                ],
            }
        )
