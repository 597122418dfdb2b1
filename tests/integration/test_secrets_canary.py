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
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from nats.js import api
from psycopg import sql

from callmeter_common.bus import Bus
from tests.support.kamailio import Kamailio

pytestmark = pytest.mark.integration

CANARY = f"canary{uuid.uuid4().hex}"  # one token: found however it is quoted or escaped
PASSWORDS = {"c1": f"{CANARY}a", "c2": f"{CANARY}b"}
HOOK_SECRET = f"{CANARY}hook"


@pytest.fixture(scope="module")
def kamailio():  # type: ignore[no-untyped-def]
    server = Kamailio(Path(tempfile.mkdtemp(prefix="kamailio-")), PASSWORDS)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def canary_run(platform, kamailio):  # type: ignore[no-untyped-def]
    reg = kamailio.registrar() | {"expires_s": 60}
    definition = {
        "name": "canary",
        "duration_s": 2,
        "groups": [
            {
                "name": "A",
                "endpoints": 1,
                "calls": "B",
                "registrar": reg,
                "accounts": [{"username": "c1", "password": PASSWORDS["c1"]}],
            },
            {
                "name": "B",
                "endpoints": 1,
                "registrar": reg,
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
    return test, done


def _raw(platform: Any, path: str, accept: str = "application/json") -> str:
    req = urllib.request.Request(platform.base + path, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.read().decode(errors="replace"))
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{path}: {err.code} {err.read()[:300]!r}") from None


def test_the_run_registered_with_the_stored_passwords(canary_run):  # type: ignore[no-untyped-def]
    test, run = canary_run
    eps = {e["id"]: e for e in run["endpoints"]}
    # Kamailio accepted the digest computed from each canary: the worker had them.
    assert eps["A-1"]["outcome"] == "SUCCESS" and eps["B-1"]["outcome"] == "SUCCESS", eps
    assert eps["A-1"]["time_to_register_ms"] and eps["B-1"]["time_to_register_ms"]
    # What the API answered when it saved the test: references, write-only flags.
    accounts = [g["accounts"][0] for g in test["definition"]["groups"]]
    assert all(a["password_set"] and a["password_ref"].startswith("sec_") for a in accounts)
    assert "password" not in accounts[0]
    assert test["definition"]["webhooks"][0]["secret_set"] is True


def test_no_api_export_or_html_response_holds_a_canary(platform, canary_run):  # type: ignore[no-untyped-def]
    test, run = canary_run
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
    ]
    bodies = {p: _raw(platform, p) for p in json_paths}
    bodies |= {p: _raw(platform, p, "text/html") for p in html_paths}
    leaked = [p for p, body in bodies.items() if CANARY in body]
    assert leaked == []
    # The editor shows the mask; the SIP ladder keeps the digest (not the password).
    assert "c1,********" in bodies[f"/tests/{tid}/edit"]
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
    test, _ = canary_run
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
        # The secrets are there, encrypted: two passwords and the webhook's secret.
        kinds = conn.execute(
            "SELECT kind FROM secrets WHERE owner = %s ORDER BY kind", (f"test:{test['id']}",)
        ).fetchall()
        assert kinds == [("sip_password",), ("sip_password",), ("webhook_secret",)]


def test_no_service_log_holds_a_canary(platform, canary_run):  # type: ignore[no-untyped-def]
    logs = sorted(platform.data_dir.rglob("*.log"))
    names = {p.name for p in logs}
    assert {"api.log", "dispatcher.log", "scheduler.log"} <= names, names
    assert any(n.startswith("hosts-") for n in names), names  # the pjsua2 hosts' own log
    assert [p.name for p in logs if CANARY in p.read_text(errors="replace")] == []


def test_deleting_the_test_destroys_its_secrets(platform, canary_run):  # type: ignore[no-untyped-def]
    test, _ = canary_run
    assert platform.request("DELETE", f"/api/v1/tests/{test['id']}")[0] == 204
    with psycopg.connect(platform.database_url) as conn:
        (left,) = conn.execute(
            "SELECT count(*) FROM secrets WHERE owner = %s", (f"test:{test['id']}",)
        ).fetchone()  # type: ignore[misc]
    assert left == 0
