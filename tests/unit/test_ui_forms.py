"""The test editor: form fields <-> definition, errors next to the right input."""

from __future__ import annotations

from callmeter_api import forms
from callmeter_api.auth import authorized, parse_keys

FIELDS = {
    "name": "office", "duration_s": "30", "buildup_s": "",
    "groups.0.name": "A", "groups.0.endpoints": "2", "groups.0.calls": "B",
    "groups.0.codecs": "PCMA, PCMU", "groups.0.registrar.host": "pbx.example",
    "groups.0.registrar.port": "5070", "groups.0.registrar.transport": "tcp",
    "groups.0.registrar.domain": "", "groups.0.accounts": "1001,secret\n\n1002,pw2,auth2\n",
    "groups.1.name": "B", "groups.1.endpoints": "2", "groups.1.calls": "", "groups.1.codecs": "PCMU",
    "groups.1.registrar.host": "", "groups.1.accounts": "",
}  # fmt: skip


def test_a_filled_form_becomes_a_valid_definition():
    definition, errors = forms.validate(forms.form_from_fields(FIELDS))
    assert errors == {} and definition is not None
    a, b = definition.groups
    assert a.codecs == ["PCMA", "PCMU"]  # order kept: it is the preference
    assert a.registrar is not None and (a.registrar.port, a.registrar.transport) == (5070, "tcp")
    assert [(x.username, x.password, x.auth_username) for x in a.accounts] == [
        ("1001", "secret", None), ("1002", "pw2", "auth2")
    ]  # fmt: skip
    assert b.registrar is None and b.calls is None and definition.buildup_s == 0


def test_the_form_round_trips_through_a_definition():
    definition, _ = forms.validate(forms.form_from_fields(FIELDS))
    assert definition is not None
    again, errors = forms.validate(forms.form_from_definition(definition.model_dump()))
    assert errors == {} and again == definition


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
        {"username": "a", "password": "b"}, {"username": "c", "password": ""}
    ]  # fmt: skip


def test_api_keys_need_the_bearer_scheme_and_an_exact_key():
    keys = parse_keys(" k1, k2 ,")
    assert keys == ("k1", "k2")
    assert authorized("Bearer k2", keys) and authorized("bearer k1", keys)
    assert not authorized("Bearer k3", keys) and not authorized("k1", keys)
    assert not authorized("Basic k1", keys) and not authorized("", keys)
