"""The test editor: form fields <-> definition, errors next to the right input."""

from __future__ import annotations

from itertools import count

from callmeter_api import forms
from callmeter_events import TestDefinition as Definition


def as_stored(d: Definition) -> Definition:
    """What the API stores: each secret given in clear replaced by a reference
    (secret_store.store_secrets, without its database)."""
    n = count(1)

    def ref() -> str:
        return f"sec_{next(n):024x}"

    groups = [
        g.model_copy(
            update={
                "accounts": [
                    a.model_copy(update={"password": None, "password_ref": ref()})
                    if a.password
                    else a
                    for a in g.accounts
                ]
            }
        )
        for g in d.groups
    ]
    hooks = [
        w.model_copy(update={"secret": None, "secret_ref": ref()}) if w.secret else w
        for w in d.webhooks
    ]
    return d.model_copy(update={"groups": groups, "webhooks": hooks})


def round_trip(d: Definition) -> tuple[Definition | None, Definition]:
    """Editing a stored test without touching it: (what the form gives back, stored)."""
    stored = as_stored(d).model_dump()
    again, errors = forms.validate(forms.form_from_definition(stored), stored)
    assert errors == {}
    return again, Definition.model_validate(stored)


FIELDS = {
    "name": "office",
    "duration_s": "30",
    "buildup_s": "",
    "groups.0.name": "A",
    "groups.0.endpoints": "2",
    "groups.0.calls": "B",
    "groups.0.codecs": "PCMA, PCMU",
    "groups.0.registrar.host": "pbx.example",
    "groups.0.registrar.port": "5070",
    "groups.0.registrar.transport": "tcp",
    "groups.0.registrar.domain": "",
    "groups.0.accounts": "1001,secret\n\n1002,pw2,auth2\n",
    "groups.1.name": "B",
    "groups.1.endpoints": "2",
    "groups.1.calls": "",
    "groups.1.codecs": "PCMU",
    "groups.1.registrar.host": "",
    "groups.1.accounts": "",
}


def test_a_filled_form_becomes_a_valid_definition():
    definition, errors = forms.validate(forms.form_from_fields(FIELDS))
    assert errors == {} and definition is not None
    a, b = definition.groups
    assert a.codecs == ["PCMA", "PCMU"]  # order kept: it is the preference
    assert a.registrar is not None and (a.registrar.port, a.registrar.transport) == (5070, "tcp")
    assert [
        (x.username, x.password and x.password.get_secret_value(), x.auth_username)
        for x in a.accounts
    ] == [
        ("1001", "secret", None),
        ("1002", "pw2", "auth2"),
    ]
    assert b.registrar is None and b.calls is None and definition.buildup_s == 0


def test_the_form_round_trips_through_a_definition():
    definition, _ = forms.validate(forms.form_from_fields(FIELDS))
    assert definition is not None
    again, stored = round_trip(definition)
    assert again == stored
    # The editor never has a stored password: it shows a mask, which keeps it.
    form = forms.form_from_definition(stored.model_dump())
    assert form["groups"][0]["accounts"] == "1001,********\n1002,********,auth2"
    assert "secret" not in str(form) and "pw2" not in str(form)


def test_a_password_typed_over_the_mask_replaces_it_and_a_blank_one_removes_it():
    definition, _ = forms.validate(forms.form_from_fields(FIELDS))
    assert definition is not None
    stored = as_stored(definition).model_dump()
    form = forms.form_from_definition(stored)
    form["groups"][0]["accounts"] = "1001,new\n1002,,auth2"
    again, errors = forms.validate(form, stored)
    assert errors == {} and again is not None
    first, second = again.groups[0].accounts
    assert first.password is not None and first.password.get_secret_value() == "new"
    assert first.password_ref is None
    assert (second.password, second.password_ref, second.password_set) == (None, None, False)


def test_errors_land_on_the_input_they_are_about():
    bad = {**FIELDS, "duration_s": "-1", "groups.1.endpoints": "zero", "groups.0.codecs": "MP3"}
    _, errors = forms.validate(forms.form_from_fields(bad))
    assert set(errors) == {"duration_s", "groups.1.endpoints", "groups.0.codecs"}
    # Cross-field checks name their field too.
    _, errors = forms.validate(forms.form_from_fields({**FIELDS, "groups.0.calls": "Z"}))
    assert list(errors) == ["groups.0.calls"] and "Z" in errors["groups.0.calls"]


def test_an_account_error_goes_to_the_accounts_box():
    _, errors = forms.validate(forms.form_from_fields({**FIELDS, "groups.0.accounts": ",pw"}))
    assert list(errors) == ["groups.0.accounts"]


def test_bulk_accounts_skip_blanks_and_comments():
    assert forms.parse_accounts("# user,pass\n a , b \n\nc") == [
        {"username": "a", "password": "b"},
        {"username": "c", "password": ""},
    ]


EXTRAS = {
    **FIELDS,
    "groups.0.options.prack": "required",
    "groups.0.options.session_timer": "optional",
    "groups.0.options.session_expires_s": "600",
    "groups.0.options.min_se_s": "120",
    "groups.0.options.answer_delay_s": "",
    "groups.0.options.dscp_rtp": "46",
    "groups.0.scenario.0.at_s": "2",
    "groups.0.scenario.0.action": "dtmf",
    "groups.0.scenario.0.digits": "12#",
    "groups.0.scenario.0.method": "info",
    "groups.0.scenario.0.codec": "",
    "groups.0.scenario.1.at_s": "4.5",
    "groups.0.scenario.1.action": "update_media",
    "groups.0.scenario.1.digits": "",
    "groups.0.scenario.1.method": "rfc4733",
    "groups.0.scenario.1.codec": "PCMA",
    "thresholds": "mos_avg >= 4.0\n\n call_success_rate >= 99 ",
    "webhooks.0.url": "https://ci.example/hook",
    "webhooks.0.secret": "s3",
    "webhooks.1.url": "",
    "webhooks.1.secret": "",  # the editor's spare blank row
}


def test_call_options_scenario_thresholds_and_webhooks_become_the_definition():
    definition, errors = forms.validate(forms.form_from_fields(EXTRAS))
    assert errors == {} and definition is not None
    a, b = definition.groups
    o = a.options
    assert (o.prack, o.session_timer, o.session_expires_s, o.min_se_s) == (
        "required",
        "optional",
        600,
        120,
    )
    assert o.dscp_rtp == 46 and o.answer_delay_s == 0  # an empty input keeps the default
    assert [(s.at_s, s.action, s.digits, s.method, s.codec) for s in a.scenario] == [
        (2, "dtmf", "12#", "info", None),
        (4.5, "update_media", None, "rfc4733", "PCMA"),
    ]
    assert b.options.prack == "off" and b.scenario == []
    assert definition.thresholds == ["mos_avg >= 4.0", "call_success_rate >= 99"]
    assert [(w.url, w.secret and w.secret.get_secret_value()) for w in definition.webhooks] == [
        ("https://ci.example/hook", "s3")
    ]
    # ... and come back to the form, so editing a test keeps them.
    again, stored = round_trip(definition)
    assert again == stored and stored.webhooks[0].secret_set


def test_scenario_option_threshold_and_webhook_errors_land_on_their_input():
    bad = {
        **EXTRAS,
        "groups.0.scenario.0.digits": "",
        "groups.0.scenario.1.codec": "",
        "groups.0.options.min_se_s": "30",
        "webhooks.0.url": "ci.example/hook",
    }
    _, errors = forms.validate(forms.form_from_fields(bad))
    assert set(errors) == {
        "groups.0.scenario.0.digits",
        "groups.0.scenario.1.codec",
        "groups.0.options.min_se_s",
        "webhooks.0.url",
    }
    assert "needs digits" in errors["groups.0.scenario.0.digits"]
    # A bad threshold is reported with its line even while other fields are wrong.
    _, errors = forms.validate(
        forms.form_from_fields({**bad, "thresholds": "mos_avg >= 4\nmos ~ 1"})
    )
    assert errors["thresholds"].startswith("thresholds, line 2:")
    _, errors = forms.validate(forms.form_from_fields({**EXTRAS, "thresholds": "nope >= 1"}))
    assert list(errors) == ["thresholds"] and "line 1" in errors["thresholds"]


def test_scenario_rows_are_added_and_removed_without_javascript():
    from callmeter_api.html_tests import apply_op

    form = forms.form_from_fields(EXTRAS)
    assert apply_op(form, "add_action:0") and len(form["groups"][0]["scenario"]) == 3
    assert form["groups"][0]["scenario"][2] == forms.blank_action()
    assert apply_op(form, "remove_action:0:0")
    assert [r["action"] for r in form["groups"][0]["scenario"]] == ["update_media", "hold"]
    assert apply_op(form, "add_action:1") and len(form["groups"][1]["scenario"]) == 1
    assert apply_op(form, "remove_action:9:0") and apply_op(form, "remove_action:0:x")
    assert not apply_op(form, "save")


def test_the_editor_shows_the_new_fields_and_their_errors():
    from callmeter_api.html_tests import editor
    from callmeter_api.pages import render

    form = forms.form_from_fields({**EXTRAS, "groups.0.scenario.0.digits": ""})
    _, errors = forms.validate(form)
    html = render("test_form.html", **editor(form, "/tests", "New", errors=errors)).body.decode()
    for name in (
        "groups.0.options.prack",
        "groups.1.options.srtp",
        "groups.0.scenario.1.codec",
        "thresholds",
        "webhooks.0.url",
        "webhooks.1.url",
    ):
        assert f'name="{name}"' in html, name
    assert 'value="add_action:1"' in html and 'value="remove_action:0:1"' in html
    assert 'id="f-groups-0-scenario-0-digits" name="groups.0.scenario.0.digits"' in html
    assert 'aria-describedby="f-groups-0-scenario-0-digits-error"' in html
    assert '<p class="field-error" id="f-groups-0-scenario-0-digits-error">' in html
    assert "<option selected>required</option>" in html  # PRACK kept on re-render


def test_editing_keeps_the_settings_the_form_has_no_input_for():
    stored = {
        "name": "office",
        "duration_s": 30,
        "project": "lab",
        "groups": [
            {
                "name": "A",
                "endpoints": 2,
                "calls": "B",
                "region": "eu",
                "drop_tx_pct": 5,
                "registrar": {"host": "old", "expires_s": 60, "outbound_proxy": "sip:px"},
            },
            {"name": "B", "endpoints": 2, "target_uri": "sip:ivr@pbx", "workers": ["w1"]},
        ],
    }
    definition, errors = forms.validate(forms.form_from_fields(FIELDS), stored)
    assert errors == {} and definition is not None
    a, b = definition.groups
    assert definition.project == "lab" and (a.region, a.drop_tx_pct) == ("eu", 5)
    assert a.registrar is not None and a.registrar.host == "pbx.example"  # the form wins
    assert (a.registrar.expires_s, a.registrar.outbound_proxy) == (60, "sip:px")
    assert (b.target_uri, b.workers) == ("sip:ivr@pbx", ["w1"])
    # A group the form makes a caller drops its old target URI (one or the other).
    _, errors = forms.validate(forms.form_from_fields({**FIELDS, "groups.1.calls": "A"}), stored)
    assert errors == {}


def test_speech_audio_and_the_pesq_sample_count_are_edited_and_checked_in_the_form():
    fields = {**FIELDS, "groups.0.audio": " speech-en ", "speech_quality_calls": "1"}
    definition, errors = forms.validate(forms.form_from_fields(fields))
    assert errors == {} and definition is not None
    assert (definition.groups[0].audio, definition.groups[1].audio) == ("speech-en", None)
    assert definition.speech_quality_calls == 1
    again, stored = round_trip(definition)
    assert again == stored
    bad = {**fields, "groups.0.audio": "song.wav", "speech_quality_calls": "-2"}
    _, errors = forms.validate(forms.form_from_fields(bad))
    assert set(errors) == {"groups.0.audio", "speech_quality_calls"}


def test_typed_passwords_and_secrets_are_never_sent_back():
    from callmeter_api.forms import (
        MASK,
        blank_typed_passwords,
        forget_json_secrets,
        forget_typed_secrets,
    )

    text = f"u1,typed\nu2,{MASK},a2\nu3\nu4,,a4\nu5, also typed ,a5"
    assert blank_typed_passwords(text) == (f"u1,\nu2,{MASK},a2\nu3\nu4,,a4\nu5,,a5", True)
    assert blank_typed_passwords(f"u2,{MASK}\nu3") == (f"u2,{MASK}\nu3", False)
    form = {
        "groups": [{"accounts": "u1,typed"}, {"accounts": ""}],
        "webhooks": [{"url": "http://h", "secret": "s3"}, {"url": "http://k", "secret": MASK}],
    }
    assert forget_typed_secrets(form) is True
    assert form["groups"][0]["accounts"] == "u1," and form["webhooks"][0]["secret"] == ""
    assert form["webhooks"][1]["secret"] == MASK
    assert forget_typed_secrets(form) is False  # nothing typed any more
    draft = '{"a": {"password": "p\\"w"}, "webhooks": [{"secret" : "x"}], "password_ref": "r"'
    out, dropped = forget_json_secrets(draft)
    assert (
        dropped
        and out == '{"a": {"password": ""}, "webhooks": [{"secret" : ""}], "password_ref": "r"'
    )
    assert forget_json_secrets('{"password": ""}') == ('{"password": ""}', False)


def test_a_call_pattern_and_a_capacity_search_are_edited_in_the_form():
    fields = {
        **FIELDS,
        "groups.0.registrar.host": "",
        "groups.0.accounts": "",
        "groups.0.pattern.kind": "rate",
        "groups.0.pattern.steps": "0:0.5, 4:1",
        "groups.0.pattern.hold": "exponential",
        "groups.0.pattern.hold_s": "2",
        "groups.0.pattern.max_calls": "20",
        "groups.0.pattern.pause_s": "9",  # a repeat field: not the rate's
        "capacity.endpoints_per_step": "1",
        "capacity.step_s": "5",
        "capacity.stop_when": "mos_avg >= 4\n\ncall_success_rate >= 99",
        "capacity.target_calls": "2",
    }
    definition, errors = forms.validate(forms.form_from_fields(fields))
    assert errors == {} and definition is not None
    a, b = definition.groups
    assert a.pattern.model_dump() == {
        "kind": "rate",
        "cps": None,
        "cps_end": None,
        "ramp_s": 0.0,
        "steps": [{"at_s": 0.0, "cps": 0.5}, {"at_s": 4.0, "cps": 1.0}],
        "hold": "exponential",
        "hold_s": 2.0,
        "max_calls": 20,
        "seed": 0,
    }
    assert b.pattern.kind == "single"
    assert definition.capacity is not None and definition.capacity.model_dump() == {
        "endpoints_per_step": 1,
        "cps_per_step": None,
        "step_s": 5.0,
        "settle_s": 2.0,
        "stop_when": ["mos_avg >= 4", "call_success_rate >= 99"],
        "target_calls": 2,
        "target_cps": None,
    }
    again, stored = round_trip(definition)
    assert again == stored
    form = forms.form_from_definition(stored.model_dump())
    assert form["groups"][0]["pattern.steps"] == "0:0.5, 4:1"
    assert form["capacity.stop_when"] == "mos_avg >= 4\ncall_success_rate >= 99"
    # A repeat pattern round-trips too; "single" and empty capacity inputs mean none.
    repeat = {**FIELDS, "groups.0.pattern.kind": "repeat", "groups.0.pattern.hold_s": "3"}
    repeat["groups.0.pattern.calls"] = "4"
    definition, errors = forms.validate(forms.form_from_fields(repeat))
    assert errors == {} and definition is not None
    assert definition.groups[0].pattern.model_dump() == {
        "kind": "repeat",
        "hold_s": 3.0,
        "pause_s": 0.0,
        "calls": 4,
    }
    assert definition.capacity is None
    again, stored = round_trip(definition)
    assert again == stored
    # Back to single, the pattern is gone (the form now has the input for it).
    single = {**FIELDS, "groups.0.pattern.kind": "single", "groups.0.pattern.hold_s": "3"}
    definition, errors = forms.validate(forms.form_from_fields(single), stored.model_dump())
    assert errors == {} and definition is not None
    assert definition.groups[0].pattern.kind == "single"


def test_pattern_and_capacity_errors_land_on_their_input():
    rate = {**FIELDS, "groups.0.pattern.kind": "rate", "groups.0.pattern.hold_s": "1"}
    cases = [
        ({"groups.0.pattern.hold_s": "-1", "groups.0.pattern.cps": "1"}, "groups.0.pattern.hold_s"),
        ({}, "groups.0.pattern.cps"),  # neither cps nor steps
        ({"groups.0.pattern.steps": "1:2"}, "groups.0.pattern.steps"),  # must start at 0
        ({"groups.0.pattern.steps": "0:x"}, "groups.0.pattern.steps"),
        ({"groups.0.pattern.cps": "1", "groups.0.pattern.cps_end": "2"}, "groups.0.pattern.ramp_s"),
        ({"groups.0.pattern.cps": "50"}, "groups.0.endpoints"),
        ({"groups.0.pattern.kind": "burst"}, "groups.0.pattern.kind"),
        (
            {
                "groups.0.pattern.cps": "1",
                "groups.1.pattern.kind": "repeat",
                "groups.1.pattern.hold_s": "1",
            },
            "groups.1.pattern.kind",  # receivers have no pattern
        ),
    ]
    for change, field in cases:
        _, errors = forms.validate(forms.form_from_fields({**rate, **change}))
        assert list(errors) == [field], (change, errors)
        assert ".rate." not in str(errors) and ".repeat." not in str(errors)
    capacity = {**FIELDS, "capacity.step_s": "5", "capacity.stop_when": "mos_avg >= 4"}
    _, errors = forms.validate(forms.form_from_fields(capacity))
    assert list(errors) == ["capacity.endpoints_per_step"]
    bad = {**capacity, "capacity.endpoints_per_step": "1", "capacity.settle_s": "5"}
    _, errors = forms.validate(forms.form_from_fields(bad))
    assert errors == {"capacity.settle_s": "capacity.settle_s: must be shorter than step_s"}
    bad = {**capacity, "capacity.endpoints_per_step": "1", "capacity.stop_when": "speed > 1"}
    _, errors = forms.validate(forms.form_from_fields(bad))
    assert list(errors) == ["capacity.stop_when"]


def test_a_capacity_search_in_calls_per_second_is_edited_in_the_form():
    fields = {
        **FIELDS,
        "groups.0.registrar.host": "",
        "groups.0.accounts": "",
        "groups.0.pattern.kind": "rate",
        "groups.0.pattern.cps": "3",
        "groups.0.pattern.hold_s": "1",
        "capacity.cps_per_step": "1",
        "capacity.step_s": "5",
        "capacity.stop_when": "call_success_rate >= 99",
        "capacity.target_cps": "2.5",
    }
    definition, errors = forms.validate(forms.form_from_fields(fields))
    assert errors == {} and definition is not None and definition.capacity is not None
    assert (definition.capacity.cps_per_step, definition.capacity.target_cps) == (1.0, 2.5)
    assert definition.capacity_steps() == 3
    again, stored = round_trip(definition)
    assert again == stored
    # Both kinds of step, or a calls-per-second search without a rate: named errors.
    _, errors = forms.validate(
        forms.form_from_fields({**fields, "capacity.endpoints_per_step": "1"})
    )
    assert list(errors) == ["capacity.endpoints_per_step"]
    _, errors = forms.validate(
        forms.form_from_fields({**fields, "groups.0.pattern.kind": "single"})
    )
    assert list(errors) == ["groups.0.pattern.kind"]
