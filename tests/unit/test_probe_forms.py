"""The probe forms: condition boxes (one a line) and where their errors are shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callmeter_api.html_probes import conditions, form_errors
from callmeter_api.probes import ProbeIn


def test_a_box_is_one_condition_a_line_and_empty_means_the_defaults() -> None:
    got = conditions({"unhealthy": " mos_avg >= 3 \r\n\n call_success_rate >= 100\n"})
    assert got == {"unhealthy": ["mos_avg >= 3", "call_success_rate >= 100"], "degraded": None}


def test_a_refused_condition_is_shown_beside_its_box_with_its_line() -> None:
    fields = {"degraded": "mos_avg >= 3\nmos_avg >>> 3"}
    with pytest.raises(ValidationError) as caught:
        ProbeIn.model_validate({"name": "p", "test_id": "t", "thresholds": conditions(fields)})
    errors = form_errors(caught.value)
    assert list(errors) == ["degraded"]
    assert errors["degraded"].startswith("degraded: line 2: 'mos_avg >>> 3' is not")


def test_other_fields_keep_their_own_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        ProbeIn.model_validate({"name": "p", "test_id": "t", "confirm": "11"})
    assert list(form_errors(caught.value)) == ["confirm"]
