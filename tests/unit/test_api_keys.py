"""API keys: `KEY` sees every project, `PROJECT:KEY` only its own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

import callmeter_events as ev
from callmeter_api.auth import event_visible, own_definition
from callmeter_api.errors import ApiError
from callmeter_api.principal import Principal
from callmeter_common.api_keys import ApiKey, match_key, parse_keys
from callmeter_storage.readmodels import ReadModels


def Scope(project: str | None = None) -> Principal:  # noqa: N802
    """What a CALLMETER_API_KEYS key is: an Owner of everything, or of its project."""
    if project is None:
        return Principal("env-key", everything=ev.AccessRole.OWNER)
    return Principal("env-key", project_roles={project: ev.AccessRole.OWNER})


DEFINITION = {"name": "t", "duration_s": 2, "groups": [{"name": "A", "endpoints": 1}]}


def test_keys_are_global_or_scoped_to_a_project():
    keys = parse_keys(" k1, acme:K1 ,, my proj.2 : k:with:colons ,")
    assert keys == (ApiKey("k1"), ApiKey("K1", "acme"), ApiKey("k:with:colons", "my proj.2"))
    assert parse_keys("") == ()


@pytest.mark.parametrize(
    "value", ["acme:", ":k1", "ac/me:k1", "x" * 65 + ":k1", "acme:k1,globex:k1", "k1,k1"]
)
def test_a_malformed_key_stops_the_start_up(value):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="CALLMETER_API_KEYS"):
        parse_keys(value)


def test_api_keys_need_the_bearer_scheme_and_an_exact_key():
    keys = parse_keys("k1,acme:k2")
    assert match_key("Bearer k2", keys) == ApiKey("k2", "acme")
    assert match_key("bearer k1", keys) == ApiKey("k1", None)
    assert match_key("Bearer acme:k2", keys) is None  # the project is not part of the token
    assert match_key("Bearer k3", keys) is None and match_key("k1", keys) is None
    assert match_key("Basic k1", keys) is None and match_key("", keys) is None


def test_a_scope_sees_its_project_and_a_global_key_every_one():
    assert Scope().sees("acme")
    assert Scope("acme").sees("acme")
    assert not Scope("acme").sees("globex") and not Scope("acme").sees(None)


def test_a_scoped_key_saves_tests_in_its_own_project_only():
    unnamed = ev.TestDefinition.model_validate(DEFINITION)
    assert own_definition(Scope("acme"), unnamed).project == "acme"
    assert own_definition(Scope(), unnamed).project == "default"
    named = ev.TestDefinition.model_validate({**DEFINITION, "project": "acme"})
    assert own_definition(Scope("acme"), named) is named
    other = ev.TestDefinition.model_validate({**DEFINITION, "project": "globex"})
    with pytest.raises(ApiError) as err:
        own_definition(Scope("acme"), other)
    assert (err.value.status, err.value.field) == (403, "project")
    assert own_definition(Scope(), other) is other


def test_global_events_are_filtered_by_the_project_of_their_run_or_test():
    models = ReadModels()
    acme = ev.TestDefinition.model_validate({**DEFINITION, "project": "acme"})
    globex = ev.TestDefinition.model_validate({**DEFINITION, "project": "globex"})
    models.fold(1, ev.TestSaved(test_id="t1", definition=acme))
    models.fold(2, ev.RunCreated(run_id="r1", test_id="t1", definition=acme))
    models.fold(3, ev.RunCreated(run_id="r2", test_id="t2", definition=globex))
    stored = {"old": "acme"}  # a settled run: no longer in memory, only in its row
    p = SimpleNamespace(projector=SimpleNamespace(models=models, run_project=stored.get))

    def visible(scope: Scope, seq: int, event: object) -> bool:
        return asyncio.run(event_visible(p, scope, seq, event))  # type: ignore[arg-type]

    done = {"stopped": False}
    assert visible(Scope("acme"), 4, ev.RunCompleted(run_id="r1", **done))
    assert not visible(Scope("acme"), 5, ev.RunCompleted(run_id="r2", **done))
    assert visible(Scope(), 5, ev.RunCompleted(run_id="r2", **done))
    assert visible(Scope("acme"), 1, ev.TestSaved(test_id="t1", definition=acme))
    assert not visible(
        Scope("acme"), 3, ev.RunCreated(run_id="r2", test_id="t2", definition=globex)
    )
    assert visible(
        Scope("acme"), 6, ev.RunEvaluated(run_id="old", passed=True, results=[], metrics={})
    )
    # A run this process has not folded (nor will): hidden, never guessed.
    assert not visible(Scope("acme"), 3, ev.RunCompleted(run_id="unknown", **done))


def test_the_platform_creates_the_demo_test_with_a_key_for_every_project():
    from callmeter_cli.platform import demo_key

    assert demo_key(parse_keys("acme:k1,k2,k3")) == ApiKey("k2")
    assert demo_key(parse_keys("acme:k1,globex:k2")) == ApiKey("k1", "acme")  # its project
    assert demo_key(()) is None
