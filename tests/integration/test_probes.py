"""Probes against a real Kamailio: a probe of one call goes Healthy, then its caller's
password stops working (as after a credential rotation) and it goes Unhealthy; the
change is an event, folded into the probe's health, and a real webhook receiver gets
it signed. The project's public status page shows it and nothing internal.

The platform accepts probe intervals down to 5 s here (CALLMETER_PROBE_MIN_INTERVAL_S,
a test-only setting): users get at least 30 s."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from callmeter_common.procs import free_port
from tests.support.kamailio import Kamailio, accounts, running_kamailio
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration

USERS = accounts("probecaller", 1) | accounts("probecallee", 1)
REPLICATED = accounts("replcaller", 1) | accounts("replcallee", 1)  # their own accounts
SECRET = "probe-hook-secret"


@pytest.fixture(scope="module")
def kamailio() -> Iterator[Kamailio]:
    with running_kamailio(USERS | REPLICATED) as server:
        yield server


@pytest.fixture(scope="module")
def fast_probes(platform_with) -> TestPlatform:  # type: ignore[no-untyped-def]
    return platform_with({"CALLMETER_PROBE_MIN_INTERVAL_S": "5", "CALLMETER_PROBE_TICK_S": "0.5"})


class Receiver:
    """A real HTTP endpoint recording every POST (headers and body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def definition(
    registrar: dict[str, Any], caller_password: str, users: dict[str, str] = USERS
) -> dict[str, Any]:
    (caller, _), (callee, callee_pw) = users.items()
    return {
        "name": "one call",
        "duration_s": 2,
        "groups": [
            {
                "name": "A",
                "endpoints": 1,
                "calls": "B",
                "registrar": registrar,
                "accounts": [{"username": caller, "password": caller_password}],
            },
            {
                "name": "B",
                "endpoints": 1,
                "registrar": registrar,
                "accounts": [{"username": callee, "password": callee_pw}],
            },
        ],
    }


def transitions(executions: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    """The changes a probe's judged executions (oldest first) make with confirm 1:
    (execution, previous, new) for each health unlike the one before; not judged
    ones change nothing."""
    changes, health = [], None
    for h in executions:
        if h["health"] is not None and h["health"] != health:
            changes.append((h["run_id"], health, h["health"]))
            health = h["health"]
    return changes


def wait_health(p: TestPlatform, probe_id: str, health: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, found = p.request("GET", f"/api/v1/probes/{probe_id}")
        if found["health"] == health:
            return found
        time.sleep(0.5)
    _, history = p.request("GET", f"/api/v1/probes/{probe_id}/history")
    raise TimeoutError(f"probe still {found.get('health')}: {history['items'][:3]}")


def test_a_probe_goes_unhealthy_and_the_projects_webhook_is_told_signed(
    fast_probes: TestPlatform, kamailio: Kamailio
) -> None:
    p, hook = fast_probes, Receiver()
    registrar = kamailio.registrar() | {"expires_s": 60}
    caller_pw = USERS["probecaller1"]
    # The project's webhook (an Admin's change), its secret write-only.
    status, body = p.request(
        "PUT",
        "/api/v1/projects/default/webhooks",
        {"webhooks": [{"url": hook.url, "secret": SECRET}]},
    )
    assert (status, body) == (200, {"webhooks": [{"url": hook.url, "secret_set": True}]})
    # Bad input is refused naming the field.
    bad = {"name": "edge", "interval_s": 2, "definition": definition(registrar, caller_pw)}
    status, body = p.request("POST", "/api/v1/probes", bad)
    assert status == 422 and body["error"]["field"] == "interval_s", body
    status, body = p.request("POST", "/api/v1/probes", bad | {"interval_s": 8, "test_id": "x"})
    assert status == 422 and body["error"]["field"] == "test_id", body

    # 1. A probe of one call through Kamailio: Healthy, with real figures.
    status, probe = p.request("POST", "/api/v1/probes", bad | {"interval_s": 8})
    assert status == 201, probe
    assert probe["unhealthy"] == ["call_success_rate >= 100"]  # the defaults of a call probe
    assert caller_pw not in json.dumps(probe)  # passwords are write-only
    probe_id = probe["id"]
    wait_health(p, probe_id, "HEALTHY", timeout=60)
    _, history = p.request("GET", f"/api/v1/probes/{probe_id}/history")
    first = next(h for h in history["items"] if h["health"] == "HEALTHY")
    assert first["success_pct"] == 100 and first["mos"] > 4.0, first
    assert first["post_dial_delay_ms"] is not None and first["post_dial_delay_ms"] > 0
    _, run = p.request("GET", f"/api/v1/runs/{first['run_id']}")
    assert run["status"] == "COMPLETED" and run["evaluation"]["passed"], run["evaluation"]

    # 2. The caller's password stops working: its registration fails, no call is made.
    broken = bad | {"interval_s": 8, "definition": definition(registrar, "wrong")}
    status, body = p.request("PUT", f"/api/v1/probes/{probe_id}", broken)
    assert status == 200, body
    found = wait_health(p, probe_id, "UNHEALTHY", timeout=60)
    assert found["since"] is not None

    # 3. The project's webhook got the change, signed with its secret.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        json.loads(b)["health"] == "UNHEALTHY" for _, b in hook.posts
    ):
        time.sleep(0.2)
    changes = [(h, json.loads(b), b) for h, b in hook.posts]
    # One POST per change of the judged executions' health (a loaded machine may judge
    # one Degraded before the first Healthy): Healthy at some point, Unhealthy last.
    _, judged = p.request("GET", f"/api/v1/probes/{probe_id}/history")
    expected = transitions(list(reversed(judged["items"])))
    told = [(c["run_id"], c["previous"], c["health"]) for _, c, _ in changes]
    assert told == expected and expected[-1][2] == "UNHEALTHY", (changes, judged)
    assert "HEALTHY" in [new for _, _, new in expected], expected
    headers, event, raw = changes[-1]
    assert headers["X-CallMeter-Event"] == "ProbeHealthChanged"
    signed = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-CallMeter-Signature"] == signed
    assert event["previous"] in ("HEALTHY", "DEGRADED")
    assert (event["probe_id"], event["project"]) == (probe_id, "default")
    assert "call_success_rate >= 100 failed" in event["reason"]
    # The event is in the execution run's events, and its delivery in that run's log.
    req = urllib.request.Request(
        f"{p.base}/api/v1/runs/{event['run_id']}/events?follow=false",
        headers={"Authorization": f"Bearer {p.api_key}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert "event: ProbeHealthChanged" in resp.read().decode()
    _, log = p.request("GET", f"/api/v1/runs/{event['run_id']}/webhooks")
    assert [(d["event_type"], d["url"], d["ok"]) for d in log["items"]] == [
        ("ProbeHealthChanged", hook.url, True)
    ], log

    # 4. The probe's pages: its health, history chart and table; the list links it.
    status, page = p.get_html(f"/probes/{probe_id}")
    assert status == 200 and 'id="probe-health"' in page and "UNHEALTHY" in page
    assert 'aria-label="MOS"' in page and 'aria-label="Post-dial delay (ms)"' in page
    assert page.count("<tr><td>") >= 2 and first["run_id"] in page
    _, listing = p.get_html("/probes")
    assert f'href="/probes/{probe_id}"' in listing
    # Its executions are runs: the runs list hides them unless asked; the API filters.
    executions = {h["run_id"] for h in history["items"]}
    _, only = p.request("GET", "/api/v1/runs?probes=true&limit=1000")
    _, none = p.request("GET", "/api/v1/runs?probes=false&limit=1000")
    assert executions <= {r["run_id"] for r in only["items"]}
    assert not executions & {r["run_id"] for r in none["items"]}
    _, runs_page = p.get_html("/runs")
    assert 'id="probe-runs"' in runs_page and first["run_id"] not in runs_page
    _, runs_page = p.get_html("/runs?probes=only")
    assert f'href="/runs/{first["run_id"]}"' in runs_page

    # 5. The public status page: no login, the probe's health, nothing internal.
    status, body = p.request("PUT", "/api/v1/projects/default/status-page", {"public": True})
    assert status == 200 and body["public"], body
    with urllib.request.urlopen(p.base + body["path"], timeout=10) as resp:  # no credentials
        page = resp.read().decode()
    assert "edge" in page and "Unhealthy" in page
    run_ids = [h["run_id"] for h in history["items"]]
    internal = [
        str(registrar["host"]),
        str(registrar["domain"]),
        f":{registrar['port']}",
        *USERS,
        *USERS.values(),
        SECRET,
        hook.url,
        probe_id,
        *run_ids,
        "call_success_rate",
        "wrong",
    ]
    leaked = [s for s in internal if s in page]
    assert not leaked, leaked
    status, _ = p.get_html("/status/not-a-page")
    assert status == 404

    # Each change is in the audit trail.
    _, org = p.request("GET", "/api/v1/orgs/default")
    done = {(a["action"], a["target"]) for a in org["audit"]}
    assert {
        ("project_webhooks_changed", "default"),
        ("probe_created", probe_id),
        ("probe_edited", probe_id),
        ("status_page_published", "default"),
    } <= done, org["audit"][:10]

    # 6. The CLI: list, show (exit 2: unhealthy, like a monitoring plugin), create.
    env = {**os.environ, "CALLMETER_API_URL": p.base, "CALLMETER_API_KEY": p.api_key}
    env["COLUMNS"] = "250"
    cli = [sys.executable, "-m", "callmeter_cli.main", "probes"]
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "UNHEALTHY" in listed.stdout, listed
    shown = subprocess.run(
        [*cli, "show", probe_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 2 and "call_success_rate" in shown.stdout, shown
    target = p.data_dir / "probe.yaml"
    target.write_text(json.dumps(definition(registrar, caller_pw)))
    made = subprocess.run(
        [*cli, "create", "--name", "cli", "--target", str(target), "--interval", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 2 and "(interval_s)" in made.stderr, made


def run_events(p: TestPlatform, run_id: str) -> list[dict[str, Any]]:
    """A run's events as the API streams them (type and data), in order."""
    req = urllib.request.Request(
        f"{p.base}/api/v1/runs/{run_id}/events?follow=false",
        headers={"Authorization": f"Bearer {p.api_key}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_two_api_processes_run_each_execution_once_and_tell_each_change_once(
    fast_probes: TestPlatform, kamailio: Kamailio
) -> None:
    """Every API process runs the probe loop; with two, each execution is one run (one
    RunCreated), the ProbeHealthChanged events are exactly the changes of the judged
    executions' health sequence, in order (derived from the history, however often a
    loaded machine makes it change), and the webhook POSTs are those events, one each."""
    p, hook = fast_probes, Receiver()
    _, listed = p.request("GET", "/api/v1/probes")
    for other in listed["items"]:  # left by another test: no calls but ours
        p.request("DELETE", f"/api/v1/probes/{other['id']}")
    p.start_replica("api", "api-2", CALLMETER_PORT=str(free_port()))
    try:
        status, _ = p.request(
            "PUT", "/api/v1/projects/default/webhooks", {"webhooks": [{"url": hook.url}]}
        )
        assert status == 200
        registrar = kamailio.registrar() | {"expires_s": 60}
        body = {
            "name": "replicated",
            "interval_s": 7,  # the least for a 2 s call
            "definition": definition(registrar, REPLICATED["replcaller1"], REPLICATED),
        }
        status, probe = p.request("POST", "/api/v1/probes", body)
        assert status == 201, probe
        # Healthy; Unhealthy once the caller's password stops working; Healthy again:
        # at least three changes, and however many more a loaded machine makes.
        path = f"/api/v1/probes/{probe['id']}"
        wait_health(p, probe["id"], "HEALTHY", timeout=60)
        broken = body | {"definition": definition(registrar, "wrong", REPLICATED)}
        assert p.request("PUT", path, broken)[0] == 200
        wait_health(p, probe["id"], "UNHEALTHY", timeout=40)
        assert p.request("PUT", path, body)[0] == 200
        wait_health(p, probe["id"], "HEALTHY", timeout=40)
        assert p.request("PUT", path, body | {"enabled": False})[0] == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # paused: the last execution judged too
            _, history = p.request("GET", f"{path}/history")
            if all(h["judged_at"] for h in history["items"]):
                break
            time.sleep(1)
        executions = list(reversed(history["items"]))  # oldest first
        assert all(h["judged_at"] for h in executions), executions
        run_ids = [h["run_id"] for h in executions]
        assert len(set(run_ids)) == len(run_ids)
        _, runs = p.request("GET", "/api/v1/runs?probes=true&limit=1000")
        made = [
            r["run_id"] for r in runs["items"] if r["definition"]["name"] == "probe: replicated"
        ]
        assert sorted(made) == sorted(run_ids)

        expected = transitions(executions)
        assert len(expected) >= 3, executions
        told, event_ids = [], []
        for run_id in run_ids:
            events = run_events(p, run_id)
            assert [e["type"] for e in events].count("RunCreated") == 1, (run_id, events)
            for e in events:
                if e["type"] == "ProbeHealthChanged":
                    told.append((e["run_id"], e["previous"], e["health"]))
                    event_ids.append(e["event_id"])
        assert told == expected, executions

        # The webhook: those changes, one POST each, in order, no second POST of any.
        def mine() -> list[tuple[dict[str, str], dict[str, Any]]]:
            posted = [(h, json.loads(b)) for h, b in hook.posts]
            return [(h, c) for h, c in posted if c["probe_id"] == probe["id"]]

        until = time.monotonic() + 20
        while time.monotonic() < until and len(mine()) < len(expected):
            time.sleep(0.2)
        time.sleep(3)  # a second POST of a change would come within the retry time
        posts = mine()
        assert [(c["probe_id"], c["run_id"], c["previous"], c["health"]) for _, c in posts] == [
            (probe["id"], *change) for change in expected
        ], posts
        assert [h["X-CallMeter-Delivery"] for h, _ in posts] == event_ids
    finally:
        p.kill("api-2", signal.SIGTERM)


def test_an_execution_is_claimed_once_and_decided_from_the_rows_before_it(own_db: str) -> None:
    """The database side of several API processes (storage probes): one claim per slot
    and none for a slot once a later one is claimed, also when two processes claim at
    once; an execution's decision reads only the rows before it, so a process judging
    it after another stored it reads what that one read."""
    from callmeter_storage import probes

    def judged(health: str | None, after: str | None) -> dict[str, Any]:
        figures = {"mos": None, "post_dial_delay_ms": None, "success_pct": None}
        return {"health": health, "reason": "", "probe_health": after} | figures

    with psycopg.connect(own_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO probes (probe_id, project, name, doc) VALUES ('pc', 'default', 'p', '{}')"
        )
        assert probes.claim_execution(conn, "pc", 5, "r5", None)
        assert not probes.claim_execution(conn, "pc", 5, "r5", None)  # the other process's
        assert not probes.claim_execution(conn, "pc", 6, "r6", None)  # decided on stale rows
        assert probes.before(conn, "pc", 5, 1) == (None, [])
        probes.record(conn, "r5", judged("UNHEALTHY", "UNHEALTHY"))
        assert probes.before(conn, "pc", 5, 1) == (None, [])  # its own row is not before it
        assert probes.claim_execution(conn, "pc", 6, "r6", 5)
        probes.record(conn, "r6", judged(None, "UNHEALTHY"))  # not judged: carried over
        assert probes.before(conn, "pc", 7, 2) == ("UNHEALTHY", ["UNHEALTHY"])
        # Migration 51 on rows from before it: the latest judged one takes the fold's health.
        conn.execute("UPDATE probe_executions SET probe_health = NULL")
        conn.execute("UPDATE probes SET health = 'DEGRADED' WHERE probe_id = 'pc'")
        probes.add_probe_health(conn)
        assert probes.before(conn, "pc", 7, 2) == ("DEGRADED", ["UNHEALTHY"])
        assert probes.before(conn, "pc", 6, 1) == (None, ["UNHEALTHY"])

    # Two processes at once: the first holds the probe's lock until it commits.
    with psycopg.connect(own_db) as first, psycopg.connect(own_db) as second:
        assert probes.claim_execution(first, "pc", 8, "r8", 6)  # not committed yet
        result: list[bool] = []
        other = threading.Thread(
            target=lambda: result.append(probes.claim_execution(second, "pc", 9, "r9", 6))
        )
        other.start()
        other.join(1.0)
        assert other.is_alive()  # waiting for the first's lock
        first.commit()
        other.join(10)
        second.commit()
        assert result == [False]  # both decided after slot 6; the first claimed 8: no 9


async def test_users_get_at_least_30_s_and_every_bad_field_is_named(own_nats, own_db) -> None:  # type: ignore[no-untyped-def]
    """The API as users get it (default settings, in process): the 30 s minimum, and
    a 422 naming the field for each kind of bad probe."""
    import httpx

    from callmeter_api.app import create_app
    from callmeter_api.settings import ApiSettings

    settings = ApiSettings(nats_url=own_nats.url, database_url=own_db, api_keys="probe-key")
    app = create_app(settings)
    call = {"name": "one call", "duration_s": 5, "groups": [{"name": "A", "endpoints": 1}]}
    base = {"name": "p", "interval_s": 30, "definition": call, "enabled": False}
    big = {**call, "groups": [{"name": "A", "endpoints": 5}]}
    bad = {
        "interval_s": {**base, "interval_s": 29.5},
        "test_id": {**base, "test_id": "t1"},  # a test id and a definition
        "thresholds.degraded.0": {**base, "thresholds": {"degraded": ["made_up >= 1"]}},
        "definition.groups": {**base, "definition": big},
        "definition.duration_s": {
            **base,
            "interval_s": 400,
            "definition": {**call, "duration_s": 300},
        },
        "confirm": {**base, "confirm": 0},
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        key = {"Authorization": "Bearer probe-key"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=key
        ) as client:
            for field, body in bad.items():
                r = await client.post("/api/v1/probes", json=body)
                assert r.status_code == 422 and r.json()["error"]["field"] == field, (field, r.text)
            r = await client.post("/api/v1/probes", json={**base, "interval_s": 29.5})
            assert r.json()["error"]["message"] == "interval_s: at least 30 s"
            r = await client.post("/api/v1/probes", json=base)
            assert r.status_code == 201, r.text
            # a registration-only target gets the registration defaults
            assert r.json()["unhealthy"] == ["registration_success_rate >= 100"]
            assert r.json()["degraded"] == []
