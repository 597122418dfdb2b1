"""Secrets never in clear: the crypto core, write-only fields, old events, the worker's check."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from callmeter_api import credentials
from callmeter_common import crypto
from callmeter_events import (
    CredentialRequest,
    EndpointAssigned,
    RunCreated,
    WorkerOnline,
    decode,
    encode,
)
from callmeter_events import TestDefinition as Definition
from callmeter_events import TestSaved as Saved
from callmeter_projections.runs import RunsProjection
from callmeter_projections.workers import apply_worker

REF = "sec_" + "ab" * 12


def definition(**account: str) -> Definition:
    return Definition.model_validate(
        {
            "name": "t",
            "duration_s": 1,
            "groups": [
                {
                    "name": "A",
                    "endpoints": 1,
                    "registrar": {"host": "pbx"},
                    "accounts": [{"username": "u1", **account}],
                }
            ],
        }
    )


# --- crypto --------------------------------------------------------------------------


def test_a_secret_opens_only_with_its_key_and_its_context():
    key = crypto.new_data_key()
    box = crypto.encrypt(key, b"canary", b"sec_1")
    assert b"canary" not in box
    assert crypto.decrypt(key, box, b"sec_1") == b"canary"
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(crypto.new_data_key(), box, b"sec_1")
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, box, b"sec_2")  # a box moved to another secret's row


def test_a_sealed_credential_opens_only_in_the_process_it_was_sealed_for():
    worker, other = crypto.new_private_key(), crypto.new_private_key()
    sealed = crypto.seal(crypto.public_key_text(worker), b"canary", b"r1/A-1/sec")
    assert crypto.open_sealed(worker, sealed, b"r1/A-1/sec") == b"canary"
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(other, sealed, b"r1/A-1/sec")
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(worker, sealed, b"r1/A-2/sec")  # another endpoint's
    with pytest.raises(crypto.CryptoError, match="public_key"):
        crypto.seal("not a key", b"x", b"")


def test_the_master_key_file_is_made_once_with_mode_0600(tmp_path: Path):
    key = crypto.master_key("", tmp_path / "data")
    path = tmp_path / "data" / crypto.KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert crypto.master_key("", tmp_path / "data") == key and len(key) == 32
    given = "11" * 32
    assert crypto.master_key(given, tmp_path / "elsewhere") == bytes.fromhex(given)
    assert not (tmp_path / "elsewhere").exists()  # the environment's key: no file
    with pytest.raises(crypto.CryptoError, match="CALLMETER_SECRET_KEY"):
        crypto.master_key("short", tmp_path)


# --- write-only fields, events -------------------------------------------------------


def test_a_password_is_write_only_and_never_serialised():
    d = definition(password="canary-pw")
    dumped = d.model_dump_json()
    assert "canary-pw" not in dumped and "canary-pw" not in repr(d)
    assert json.loads(dumped)["groups"][0]["accounts"][0]["password_set"] is True
    assert d.clear_secrets() == ["groups.0.accounts.0.password"]
    # A document as read back (password_set, no password) is valid input again.
    again = Definition.model_validate_json(definition(password_ref=REF).model_dump_json())
    assert again.groups[0].accounts[0].password_ref == REF and again.clear_secrets() == []
    assert definition(password="").groups[0].accounts[0].password_set is False


def test_no_event_can_carry_a_secret_in_clear():
    with pytest.raises(ValueError, match=r"groups\.0\.accounts\.0\.password: a secret in clear"):
        Saved(test_id="t", definition=definition(password="canary-pw"))
    with pytest.raises(ValueError, match="a secret in clear"):
        RunCreated(run_id="r", test_id="t", definition=definition(password="canary-pw"))
    saved = Saved(test_id="t", definition=definition(password_ref=REF))
    assert decode(encode(saved)) == saved


def test_events_written_before_the_secret_store_lose_their_clear_secrets():
    v1 = {
        "type": "RunCreated",
        "run_id": "r",
        "test_id": "t",
        "occurred_at": "2026-01-01T00:00:00Z",
        "definition": {
            "name": "t",
            "duration_s": 1,
            "groups": [
                {"name": "A", "endpoints": 1, "accounts": [{"username": "u", "password": "old"}]}
            ],
            "webhooks": [{"url": "https://x.example/h", "secret": "old-hook"}],
        },
    }
    event = decode(json.dumps(v1).encode())
    assert isinstance(event, RunCreated) and event.schema_version == 2
    assert b'"old"' not in encode(event) and b"old-hook" not in encode(event)
    assert event.definition.groups[0].accounts[0].password_set is False
    assigned_v1 = {
        "type": "EndpointAssigned",
        "run_id": "r",
        "endpoint_id": "A-1",
        "worker_id": "w",
        "config": {
            "group": "A",
            "role": "idle",
            "codecs": ["PCMU"],
            "duration_s": 1,
            "username": "u",
            "account": {"username": "u", "password": "old"},
        },
    }
    assigned = decode(json.dumps(assigned_v1).encode())
    assert isinstance(assigned, EndpointAssigned) and b'"old"' not in encode(assigned)


# --- which credential request is answered --------------------------------------------


def test_a_credential_goes_only_to_the_worker_its_endpoint_is_assigned_to():
    runs = RunsProjection()
    runs.apply(1, RunCreated(run_id="r", test_id="t", definition=definition(password_ref=REF)))
    workers = {
        w: apply_worker(WorkerOnline(worker_id=w, capacity=4, public_key=f"key-{w}"), None)
        for w in ("w1", "w2")
    }

    def ask(worker: str = "w1", ref: str = REF, endpoint: str = "A-1", key: str = "") -> str | None:
        req = CredentialRequest(
            run_id="r",
            endpoint_id=endpoint,
            worker_id=worker,
            ref=ref,
            public_key=key or f"key-{worker}",
        )
        project, why = credentials.decide(runs, workers, req)  # type: ignore[arg-type]
        return project if why is None else why

    assert "not assigned to worker w1" in str(ask())  # not assigned yet
    runs.apply(
        2,
        EndpointAssigned.model_validate(
            {
                "run_id": "r",
                "endpoint_id": "A-1",
                "worker_id": "w1",
                "config": {
                    "group": "A",
                    "role": "idle",
                    "codecs": ["PCMU"],
                    "duration_s": 1,
                    "username": "u1",
                    "account": {"username": "u1", "password_ref": REF},
                },
            }
        ),
    )
    assert ask() == "default"
    assert "not assigned to worker w2" in str(ask(worker="w2"))
    # Only to the key the worker announced: not to one a request merely claims.
    assert "not the one worker w1 announced" in str(ask(key="key-w2"))
    assert "not the one worker w9 announced" in str(ask(worker="w9"))
    assert "is not an account of group A" in str(ask(ref="sec_" + "cd" * 12))
    assert "no endpoint A-9" in str(ask(endpoint="A-9"))
