"""Secrets never in clear: canaries saved as SIP passwords and a webhook secret, one full
run that registers with them against a real Kamailio, then every place we write is read.

Nowhere outside the secret store's ciphertext may a canary appear: not in any NATS
stream (every stream read to its end, headers too), not in any PostgreSQL table (each
row as text, bytea also as hex), not in any service or endpoint-host log, nor in any
API, export or HTML response. The SIP trace keeps the Authorization header's digest
response, which is not the password. Deleting the test destroys its secrets.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import psycopg
import pytest
from nats.js import api
from psycopg import sql

from callmeter_common.bus import Bus
from tests.integration.test_api_ui import post_form
from tests.support.kamailio import running_kamailio

pytestmark = pytest.mark.integration

CANARY = f"canary{uuid.uuid4().hex}"  # one token: found however it is quoted or escaped
PASSWORDS = {"c1": f"{CANARY}a", "c2": f"{CANARY}b"}
HOOK_SECRET = f"{CANARY}hook"


@pytest.fixture(scope="module")
def kamailio():  # type: ignore[no-untyped-def]
    with running_kamailio(PASSWORDS) as server:
        yield server


@pytest.fixture(scope="module")
def canary_run(platform, kamailio):  # type: ignore[no-untyped-def]
    """A1 registers with a pool account (bulk CSV import) through a saved registrar;
    B1 with an account given inline in the test (moved to the secret store on save)."""
    status, reg = platform.request(
        "POST", "/api/v1/registrars", {"name": "kamailio", **kamailio.registrar(), "expires_s": 60}
    )
    assert status == 201, reg
    csv_text = f"username,password\nc1,{PASSWORDS['c1']}\n"
    status, pool = platform.request("POST", "/api/v1/pools", {"name": "office", "csv": csv_text})
    assert status == 201, pool
    definition = {
        "name": "canary",
        "duration_s": 2,
        "groups": [
            {
                "name": "A",
                "endpoints": 1,
                "calls": "B",
                "registrar_id": reg["id"],
                "account_pool": pool["id"],
            },
            {
                "name": "B",
                "endpoints": 1,
                "registrar": kamailio.registrar() | {"expires_s": 60},
                "accounts": [{"username": "c2", "password": PASSWORDS["c2"]}],
            },
        ],
        # Nobody listens on port 9: deliveries fail and are logged, with their secret.
        "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": HOOK_SECRET}],
    }
    status, test = platform.request("POST", "/api/v1/tests", definition)
    assert status == 201, test
    status, run = platform.request("POST", f"/api/v1/tests/{test['id']}/runs")
    assert status == 202, run
    done = platform.wait_status(run["id"], {"COMPLETED", "FAILED"}, timeout=90)
    return test, done, pool


def _raw(platform: Any, path: str, accept: str = "application/json") -> str:
    req = urllib.request.Request(platform.base + path, headers={"Accept": accept, **platform.auth})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.read().decode(errors="replace"))
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{path}: {err.code} {err.read()[:300]!r}") from None


def test_the_run_registered_with_the_stored_passwords(canary_run):  # type: ignore[no-untyped-def]
    test, run, pool = canary_run
    eps = {e["id"]: e for e in run["endpoints"]}
    # Kamailio accepted the digest computed from each canary: the worker had them.
    assert eps["A-1"]["outcome"] == "SUCCESS" and eps["B-1"]["outcome"] == "SUCCESS", eps
    assert eps["A-1"]["time_to_register_ms"] and eps["B-1"]["time_to_register_ms"]
    # What the API answered when it saved the test: references, write-only flags.
    [account] = test["definition"]["groups"][1]["accounts"]
    assert account["password_set"] and account["password_ref"].startswith("sec_")
    assert "password" not in account
    assert test["definition"]["webhooks"][0]["secret_set"] is True
    # The pool as imported: passwords masked; the run took its account (copied in).
    assert pool["accounts"] == [
        {"username": "c1", "auth_username": None, "password_set": True, "in_use": False}
    ]
    assert (pool["size"], pool["free"]) == (1, 1)
    [taken] = run["definition"]["groups"][0]["accounts"]
    assert taken["username"] == "c1" and taken["password_set"]
    assert (
        run["definition"]["groups"][0]["registrar"]["port"]
        == run["definition"]["groups"][1]["registrar"]["port"]
    )


def test_no_api_export_or_html_response_holds_a_canary(platform, canary_run):  # type: ignore[no-untyped-def]
    test, run, pool = canary_run
    tid, rid = test["id"], run["id"]
    json_paths = [
        "/api/v1/tests",
        f"/api/v1/tests/{tid}",
        "/api/v1/runs",
        f"/api/v1/runs/{rid}",
        f"/api/v1/runs/{rid}/endpoints",
        f"/api/v1/runs/{rid}/endpoints/A-1",
        f"/api/v1/runs/{rid}/endpoints/B-1",
        f"/api/v1/runs/{rid}/results",
        f"/api/v1/runs/{rid}/webhooks",
        f"/api/v1/runs/{rid}/speech_quality?format=csv",
        f"/api/v1/runs/{rid}/samples?format=csv",
        "/api/v1/pools",
        f"/api/v1/pools/{pool['id']}",
        "/api/v1/registrars",
        "/openapi.json",
    ]
    html_paths = [
        "/",
        f"/tests/{tid}",
        f"/tests/{tid}/edit",
        f"/runs/{rid}",
        f"/runs/{rid}/endpoints",
        f"/runs/{rid}/endpoints/A-1",
        f"/runs/{rid}/replay",
        "/pools",
        f"/pools/{pool['id']}",
    ]
    bodies = {p: _raw(platform, p) for p in json_paths}
    bodies |= {p: _raw(platform, p, "text/html") for p in html_paths}
    leaked = [p for p, body in bodies.items() if CANARY in body]
    assert leaked == []
    # The editor shows the mask; the SIP ladder keeps the digest (not the password).
    assert "c2,********" in bodies[f"/tests/{tid}/edit"]
    assert "c1,********" in bodies[f"/pools/{pool['id']}"]
    ladder = bodies[f"/runs/{rid}/endpoints/A-1"]
    assert "Authorization: Digest" in ladder and "response=" in ladder


def test_no_nats_stream_holds_a_canary(platform, canary_run):  # type: ignore[no-untyped-def]
    async def scan() -> dict[str, tuple[int, int, list[int]]]:
        bus = await Bus.connect(platform.nats_url, "test-canary")
        out: dict[str, tuple[int, int, list[int]]] = {}
        try:
            for info in await bus.js.streams_info():
                name, held = info.config.name, info.state.messages
                read, hits = 0, []
                for subject in info.config.subjects or []:
                    if held == 0:
                        break
                    sub = await bus.js.subscribe(
                        subject,
                        stream=name,
                        ordered_consumer=True,
                        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
                    )
                    try:
                        while True:
                            try:
                                msg = await sub.next_msg(timeout=5)
                            except TimeoutError:
                                break
                            read += 1
                            headers = json.dumps(msg.headers or {}).encode()
                            if CANARY.encode() in msg.data + headers + msg.subject.encode():
                                hits.append(msg.metadata.sequence.stream)
                            if msg.metadata.num_pending == 0:
                                break
                    finally:
                        await sub.unsubscribe()
                out[name] = (held, read, hits)
        finally:
            await bus.close()
        return out

    streams = asyncio.run(scan())
    assert {"CALLMETER_EVENTS", "CALLMETER_TRACES", "CALLMETER_WORKERS"} <= set(streams)
    for name, (held, read, hits) in streams.items():
        assert read >= held, f"{name}: read {read} of {held} messages"  # read to the end
        assert hits == [], f"{name}: canary in messages {hits}"


def test_no_table_holds_a_canary_outside_the_secret_store(platform, canary_run):  # type: ignore[no-untyped-def]
    test, _, pool = canary_run
    with psycopg.connect(platform.database_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert ("public", "tests") in tables and ("public", "secrets") in tables
        hex_canary = "%" + CANARY.encode().hex() + "%"
        found = []
        for schema, table in tables:
            (n,) = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {} t WHERE t::text LIKE %s OR t::text LIKE %s"
                ).format(sql.Identifier(schema, table)),
                (f"%{CANARY}%", hex_canary),
            ).fetchone()  # type: ignore[misc]
            if n:
                found.append((schema, table, n))
        assert found == []
        # The secrets are there, encrypted: the test's password and webhook secret, the pool's.
        kinds = conn.execute(
            "SELECT owner, kind FROM secrets WHERE owner IN (%s, %s) ORDER BY kind, owner",
            (f"test:{test['id']}", f"pool:{pool['id']}"),
        ).fetchall()
        assert kinds == [
            (f"pool:{pool['id']}", "sip_password"),
            (f"test:{test['id']}", "sip_password"),
            (f"test:{test['id']}", "webhook_secret"),
        ]


def test_no_service_log_holds_a_canary(platform, canary_run):  # type: ignore[no-untyped-def]
    logs = sorted(platform.data_dir.rglob("*.log"))
    names = {p.name for p in logs}
    assert {"api.log", "dispatcher.log", "scheduler.log"} <= names, names
    assert any(n.startswith("hosts-") for n in names), names  # the pjsua2 hosts' own log
    assert [p.name for p in logs if CANARY in p.read_text(errors="replace")] == []


def test_deleting_the_test_and_the_pool_destroys_their_secrets(platform, canary_run):  # type: ignore[no-untyped-def]
    test, _, pool = canary_run
    owners = (f"test:{test['id']}", f"pool:{pool['id']}")

    def left() -> int:
        with psycopg.connect(platform.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM secrets WHERE owner IN (%s, %s)", owners
            ).fetchone()
        assert row is not None
        return int(row[0])

    assert left() == 3
    assert platform.request("DELETE", f"/api/v1/tests/{test['id']}")[0] == 204
    assert left() == 1
    assert platform.request("DELETE", f"/api/v1/pools/{pool['id']}")[0] == 204
    assert left() == 0
    assert platform.request("GET", f"/api/v1/pools/{pool['id']}")[0] == 404


# --- registrars and pools: bad input names its field ------------------------------------


def test_bad_registrars_pools_and_references_are_refused_naming_the_field(platform):  # type: ignore[no-untyped-def]
    def error(method: str, path: str, body: Any) -> tuple[int, str | None, str]:
        status, answer = platform.request(method, path, body)
        return status, answer["error"]["field"], answer["error"]["message"]

    status, field, _ = error("POST", "/api/v1/registrars", {"name": "r", "host": "h", "port": 0})
    assert (status, field) == (422, "port")
    status, field, message = error("POST", "/api/v1/pools", {"name": "p", "csv": "u1,pw\n,pw2\n"})
    assert (status, field) == (422, "csv") and "line 2" in message
    status, field, _ = error("POST", "/api/v1/pools", {"name": "p", "csv": "u1,a\nu1,b\n"})
    assert (status, field) == (422, "csv")
    status, pool = platform.request("POST", "/api/v1/pools", {"name": "dup", "csv": "u9,x"})
    assert status == 201
    status, field, _ = error("POST", "/api/v1/pools", {"name": "dup", "csv": "u8,x"})
    assert (status, field) == (422, "name")
    missing = {
        "name": "t",
        "duration_s": 1,
        "groups": [{"name": "A", "endpoints": 1, "account_pool": "pool_" + "0" * 12}],
    }
    status, field, _ = error("POST", "/api/v1/tests", missing)
    assert (status, field) == (422, "groups.0.account_pool")
    # Two endpoints, one account in the pool: the run is refused, counting the free ones.
    short = {
        "name": "short",
        "duration_s": 1,
        "groups": [
            {
                "name": "A",
                "endpoints": 2,
                "registrar": {"host": "127.0.0.1"},
                "account_pool": pool["id"],
            }
        ],
    }
    run_id = platform.run_test(short)
    run = platform.wait_status(run_id, {"CANNOT_RUN_FOR_NOW"}, timeout=30)
    assert f"account pool {pool['id']} has 1 free accounts" in run["reason"], run


def test_pools_and_registrars_are_kept_in_the_pages_and_offered_by_the_editor(platform):  # type: ignore[no-untyped-def]
    # A CSV line without a username: 422, the message beside the accounts box.
    status, _, html = post_form(platform, "/pools", {"name": "ui", "csv": "u1,pw1\n,pw2"})
    assert status == 422 and 'id="f-csv"' in html and "line 2" in html
    status, location, _ = post_form(platform, "/pools", {"name": "ui", "csv": "u1,pw1\nu2,pw2,a2"})
    assert status == 303 and location.startswith("/pools/pool_")
    pool_id = location.rsplit("/", 1)[1]
    _, html = platform.get_html(location)
    assert "u1,********" in html and "u2,********,a2" in html and "pw1" not in html
    # Saved as shown (masks left alone): the passwords are kept; a new line adds one.
    edited = {"name": "ui", "project": "default", "csv": "u1,********\nu2,********,a2\nu3,pw3"}
    assert post_form(platform, location, edited)[0] == 303
    _, pool = platform.request("GET", f"/api/v1/pools/{pool_id}")
    assert [(a["username"], a["password_set"]) for a in pool["accounts"]] == [
        ("u1", True),
        ("u2", True),
        ("u3", True),
    ]
    status, _, html = post_form(
        platform, "/registrars", {"name": "pbx", "host": "", "port": "5060"}
    )
    assert status == 422 and 'id="f-host"' in html and 'aria-invalid="true"' in html
    assert post_form(platform, "/registrars", {"name": "pbx", "host": "pbx.example"})[0] == 303
    # The test editor offers both, per group.
    _, html = platform.get_html("/tests/new")
    assert f'<option value="{pool_id}">ui (default)</option>' in html
    assert ">pbx (default)</option>" in html
