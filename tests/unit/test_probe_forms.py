"""The probe forms: condition boxes (one a line), a target of the probe's own, and
where their errors are shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from callmeter_api.html_probes import conditions, form_errors, inline_target
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


def test_a_target_uri_is_one_call_and_a_registrar_alone_a_registration() -> None:
    assert inline_target({"name": "p", "registrar_id": "", "target_uri": " "}) is None
    call = inline_target(
        {"name": "sbc", "target_uri": "sip:echo@sbc.example", "codec": "PCMA", "call_s": "8"}
    )
    assert call == {
        "name": "sbc",
        "duration_s": "8",
        "groups": [
            {"name": "P", "endpoints": 1, "codecs": ["PCMA"], "target_uri": "sip:echo@sbc.example"}
        ],
    }
    ProbeIn.model_validate({"name": "sbc", "definition": call})  # a definition as it is
    reg = inline_target({"registrar_id": "reg_1", "username": "u1", "password": "pw"})
    assert reg is not None and reg["duration_s"] == 10
    assert reg["groups"] == [
        {
            "name": "P",
            "endpoints": 1,
            "codecs": ["PCMU"],
            "registrar_id": "reg_1",
            "accounts": [{"username": "u1", "password": "pw"}],
        }
    ]


def test_an_inline_targets_errors_go_beside_its_fields() -> None:
    bad = inline_target({"target_uri": "sip:x@y", "call_s": "long", "codec": "G729"})
    with pytest.raises(ValidationError) as caught:
        ProbeIn.model_validate({"name": "p", "definition": bad})
    errors = form_errors(caught.value)
    assert set(errors) <= {"call_s", "codec"} and errors, errors
    field = next(iter(errors))
    assert errors[field].startswith(f"{field}: ")
