"""Registrars and account pools: CSV import, the free count, the pool as answered."""

from __future__ import annotations

import pytest

from callmeter_api import resources
from callmeter_api.errors import ApiError
from callmeter_events import RunCompleted, RunCreated
from callmeter_events import TestDefinition as Definition
from callmeter_projections.runs import RunsProjection

POOL = "pool_" + "1" * 12


def test_csv_import_skips_the_header_blanks_and_comments():
    accounts = resources.parse_csv("username,password\n1001,pw1\n\n# spare\n1002,,auth2\n")
    assert [(a.username, a.password_set, a.auth_username) for a in accounts] == [
        ("1001", True, None),
        ("1002", False, "auth2"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1001,pw\n,pw2\n", "csv: line 2: username:"),
        ("1001,pw,a,extra\n", "csv: line 1: more than 3 columns"),
        ("1001," + "x" * 300 + "\n", "csv: line 1: password:"),
    ],
)
def test_a_bad_csv_line_is_named(text: str, message: str):
    with pytest.raises(ApiError) as err:
        resources.parse_csv(text)
    assert err.value.field == "csv" and err.value.message.startswith(message)


def test_accounts_of_active_runs_are_in_use_until_the_run_ends():
    runs = RunsProjection()
    group = {
        "name": "A",
        "endpoints": 1,
        "registrar": {"host": "pbx"},
        "account_pool": POOL,
        "accounts": [{"username": "1001"}, {"username": "1002"}],
    }
    definition = Definition.model_validate({"name": "t", "duration_s": 1, "groups": [group]})
    runs.apply(1, RunCreated(run_id="r", test_id="t", definition=definition))
    # One endpoint: the run holds only the first account it was given.
    assert resources.in_use(runs, POOL) == {"1001"}
    assert resources.in_use(runs, "pool_" + "2" * 12) == set()
    pool = {
        "id": POOL,
        "project": "default",
        "name": "office",
        "accounts": [
            {"username": "1001", "auth_username": None, "password_ref": "sec_" + "0" * 24},
            {"username": "1002", "auth_username": None, "password_ref": None},
        ],
    }
    view = resources.pool_view(pool, resources.in_use(runs, POOL))
    assert (view["size"], view["free"]) == (2, 1)
    assert view["accounts"][0] == {
        "username": "1001",
        "auth_username": None,
        "password_set": True,
        "in_use": True,
    }
    assert "sec_" not in str(view["accounts"])
    runs.apply(2, RunCompleted(run_id="r"))
    assert resources.in_use(runs, POOL) == set()


def test_a_deleted_test_whose_saves_were_purged_leaves_nothing_to_write():
    """`callmeter secrets purge-clear` removes every TestSaved of a deleted test: the
    read-model writer then meets a TestDeleted of a test it never saw."""
    from callmeter_events import TestDeleted
    from callmeter_storage.readmodels import TESTS, ReadModels

    models = ReadModels()
    touched = models.fold(1, TestDeleted(test_id="gone"))
    snapshot = models.snapshot(touched, TESTS)
    assert snapshot.position == 1 and snapshot.tests == []
