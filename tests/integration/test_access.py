"""Users, organisations, roles, API keys, CSRF and the first-admin setup, on the real
API (in process) over its own NATS and PostgreSQL (users created here must not
claim the session's shared platform)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from callmeter_api.app import create_app
from callmeter_api.settings import ApiSettings
from callmeter_events import AccessRole

pytestmark = pytest.mark.integration

ROOT = "root-key-for-tests"
SETUP = "setup-token-for-tests"
PASSWORD = "correct horse battery"
ROLES = list(AccessRole)
DEFINITION = {"name": "t", "duration_s": 2, "groups": [{"name": "A", "endpoints": 1}]}
HOOK = [{"url": "http://127.0.0.1:9/hook"}]
REGISTRAR = {"name": "pbx", "host": "pbx.example"}
POOL = {"name": "pool", "csv": "u1,secret-pw"}
PROBE = {"name": "watch", "interval_s": 60, "definition": DEFINITION, "enabled": False}


@dataclass
class World:
    client: httpx.AsyncClient
    tests: dict[str, str] = field(default_factory=dict)  # project -> test id
    runs: dict[str, list[str]] = field(default_factory=dict)  # project -> two run ids
    registrars: dict[str, str] = field(default_factory=dict)  # org -> a registrar id
    pools: dict[str, str] = field(default_factory=dict)  # org -> an account pool id
    probes: dict[str, str] = field(default_factory=dict)  # org -> a (paused) probe id
    keys: dict[AccessRole, str] = field(default_factory=dict)  # acme-p key per role
    users: dict[AccessRole, tuple[str, str]] = field(default_factory=dict)  # (cookie, csrf)

    async def root(self, method: str, path: str, body: Any = None) -> Any:
        r = await self.client.request(method, path, json=body, headers=bearer(ROOT))
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json() if r.content else None


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> tuple[str, str]:
    """(session cookie, csrf token), as a browser gets them."""
    r = await client.post("/login", data={"username": username, "password": password})
    assert r.status_code == 303, r.text
    cookie = r.cookies["callmeter_session"]
    client.cookies.clear()
    client.cookies.set("callmeter_session", cookie)
    page = await client.get("/account")
    client.cookies.clear()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    return cookie, csrf[1]


@pytest.fixture
async def app_client(own_nats, own_db) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    settings = ApiSettings(
        nats_url=own_nats.url, database_url=own_db, api_keys=ROOT, setup_token=SETUP
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


@pytest.fixture
async def world(app_client: httpx.AsyncClient) -> World:
    """Organisations acme and globex, a project each, a test and two runs in each; a
    member of acme and an acme-p API key with every role."""
    w = World(app_client)
    for org in ("acme", "globex"):
        await w.root("POST", "/api/v1/orgs", {"org": org})
        await w.root("POST", f"/api/v1/orgs/{org}/projects", {"project": f"{org}-p"})
        test = await w.root("POST", "/api/v1/tests", {**DEFINITION, "project": f"{org}-p"})
        w.tests[org] = test["id"]
        w.runs[org] = [
            (await w.root("POST", f"/api/v1/tests/{test['id']}/runs"))["id"] for _ in range(2)
        ]
        reg = await w.root("POST", "/api/v1/registrars", {**REGISTRAR, "project": f"{org}-p"})
        w.registrars[org] = reg["id"]
        pool = await w.root("POST", "/api/v1/pools", {**POOL, "project": f"{org}-p"})
        w.pools[org] = pool["id"]
        probe = await w.root("POST", "/api/v1/probes", {**PROBE, "project": f"{org}-p"})
        w.probes[org] = probe["id"]
    for role in ROLES:
        name = f"acme-{role.value}"
        await w.root("POST", "/api/v1/users", {"username": name, "password": PASSWORD})
        await w.root("PUT", f"/api/v1/orgs/acme/members/{name}", {"role": role.value})
        w.users[role] = await login(app_client, name, PASSWORD)
        key = await w.root("POST", "/api/v1/projects/acme-p/keys", {"name": name, "role": role})
        w.keys[role] = key["key"]
    return w


V, T, E = AccessRole.VIEWER, AccessRole.TESTER, AccessRole.EDITOR
A, OWN = AccessRole.ADMIN, AccessRole.OWNER
# (method, path, JSON body or None, role needed, an organisation action)
JSON_ACTIONS: list[tuple[str, str, Any, AccessRole, bool]] = [
    ("GET", "/api/v1/tests/{test}", None, V, False),
    ("GET", "/api/v1/runs/{run}", None, V, False),
    ("GET", "/api/v1/runs/{run}/results", None, V, False),
    ("GET", "/api/v1/runs/{run}/samples?format=csv", None, V, False),
    ("GET", "/api/v1/runs/{run}/webhooks", None, V, False),
    ("GET", "/api/v1/runs/{run}/endpoints", None, V, False),
    ("GET", "/api/v1/compare?runs={run},{run2}", None, V, False),
    ("POST", "/api/v1/tests/{test}/runs", None, T, False),
    ("POST", "/api/v1/runs/{run}/stop", None, T, False),
    ("POST", "/api/v1/tests", {**DEFINITION, "project": "acme-p"}, E, False),
    ("PUT", "/api/v1/tests/{test}", {**DEFINITION, "project": "acme-p"}, E, False),
    ("POST", "/api/v1/tests", {**DEFINITION, "project": "acme-p", "webhooks": HOOK}, A, False),
    ("POST", "/api/v1/tests/{test}/duplicate", None, E, False),
    ("DELETE", "/api/v1/tests/{fresh}", None, E, False),
    ("GET", "/api/v1/registrars/{reg}", None, V, False),
    ("GET", "/api/v1/pools/{pool}", None, V, False),
    ("PUT", "/api/v1/registrars/{reg}", {**REGISTRAR, "project": "acme-p"}, E, False),
    ("PUT", "/api/v1/pools/{pool}", {**POOL, "project": "acme-p"}, E, False),
    ("POST", "/api/v1/registrars", {**REGISTRAR, "name": "{fresh}", "project": "acme-p"}, E, False),
    ("GET", "/api/v1/probes/{probe}", None, V, False),
    ("GET", "/api/v1/probes/{probe}/history", None, V, False),
    ("PUT", "/api/v1/probes/{probe}", {**PROBE, "project": "acme-p"}, E, False),
    ("POST", "/api/v1/probes", {**PROBE, "name": "{fresh}", "project": "acme-p"}, E, False),
    ("GET", "/api/v1/projects/acme-p/webhooks", None, V, False),
    ("PUT", "/api/v1/projects/acme-p/webhooks", {"webhooks": HOOK}, A, False),
    ("PUT", "/api/v1/projects/acme-p/status-page", {"public": False}, A, False),
    ("GET", "/api/v1/orgs/acme", None, A, True),
    ("POST", "/api/v1/projects/acme-p/keys", {"name": "k", "role": "viewer"}, A, True),
    ("PUT", "/api/v1/orgs/acme/members/acme-viewer", {"role": "viewer"}, A, True),
    ("PUT", "/api/v1/orgs/acme/members/acme-owner", {"role": "owner"}, OWN, True),
]
# (method, path, form fields or None, role needed, an organisation action)
HTML_ACTIONS: list[tuple[str, str, Any, AccessRole, bool]] = [
    ("GET", "/tests/{test}", None, V, False),
    ("GET", "/runs/{run}", None, V, False),
    ("GET", "/runs/{run}/endpoints", None, V, False),
    ("GET", "/runs/{run}/replay", None, V, False),
    ("GET", "/compare?runs={run}&runs={run2}", None, V, False),
    ("POST", "/tests/{test}/run", {}, T, False),
    ("POST", "/runs/{run}/stop", {}, T, False),
    ("GET", "/tests/new", None, E, False),
    ("GET", "/tests/{test}/edit", None, E, False),
    ("POST", "/tests/{test}/duplicate", {}, E, False),
    ("POST", "/tests/{fresh}/delete", {}, E, False),
    ("GET", "/pools/{pool}", None, V, False),
    ("POST", "/registrars/{reg}/delete", {}, E, False),
    ("GET", "/probes/{probe}", None, V, False),
    ("POST", "/probes/{probe}/enabled", {"enabled": "0"}, E, False),
    ("POST", "/probes/status-page", {"project": "acme-p", "public": "0"}, A, False),
    ("POST", "/probes/webhooks", {"project": "acme-p", "url": "http://127.0.0.1:9/h"}, A, False),
    ("GET", "/orgs/acme", None, A, True),
    ("POST", "/orgs/acme", {"op": "project", "project": "acme-q"}, A, True),
]


async def call(
    w: World, who: tuple[str, AccessRole], method: str, path: str, body: Any, html: bool
) -> httpx.Response:
    kind, role = who
    if isinstance(body, dict) and body.get("name") == "{fresh}":  # a new name per call
        body = {**body, "name": uuid.uuid4().hex[:8]}
    headers = {"Accept": "text/html"} if html else {}
    cookies: dict[str, str] = {}
    if kind == "key":
        headers.update(bearer(w.keys[role]))
    else:
        cookie, csrf = w.users[role]
        cookies["callmeter_session"] = cookie
        if html and body is not None:
            body = {**body, "csrf_token": csrf}
        else:
            headers["X-CSRF-Token"] = csrf
    if cookies:
        headers["Cookie"] = f"callmeter_session={cookies['callmeter_session']}"
    if html and body is not None:
        return await w.client.request(method, path, data=body, headers=headers)
    return await w.client.request(method, path, json=body, headers=headers)


async def fill(w: World, path: str, org: str = "acme") -> str:
    fresh = ""
    if "{fresh}" in path:
        test = await w.root("POST", "/api/v1/tests", {**DEFINITION, "project": f"{org}-p"})
        fresh = test["id"]
    run, run2 = w.runs[org]
    reg = w.registrars[org]
    if "/registrars/{reg}/delete" in path:  # each caller deletes one of its own
        made = await w.root(
            "POST",
            "/api/v1/registrars",
            {**REGISTRAR, "name": uuid.uuid4().hex[:8], "project": f"{org}-p"},
        )
        reg = made["id"]
    return path.format(
        test=w.tests[org],
        run=run,
        run2=run2,
        fresh=fresh,
        reg=reg,
        pool=w.pools[org],
        probe=w.probes[org],
    )


async def test_every_role_may_do_what_its_role_allows_and_nothing_more(world: World) -> None:
    """The role matrix: each role, as a logged-in member and as an API key, × each
    action, JSON and HTML; allowed is any answer but 401/403/404, refused is 403
    (an organisation action by a project key: 404, it belongs to no organisation)."""
    callers = [(kind, role) for kind in ("user", "key") for role in ROLES]
    wrong: list[str] = []
    for html, actions in ((False, JSON_ACTIONS), (True, HTML_ACTIONS)):
        for method, template, body, needed, org_level in actions:
            paths = [await fill(world, template) for _ in callers]
            answers = await asyncio.gather(
                *(
                    call(world, who, method, path, body, html)
                    for who, path in zip(callers, paths, strict=True)
                )
            )
            for (kind, role), r in zip(callers, answers, strict=True):
                if kind == "key" and org_level:
                    expected = "404"
                else:
                    expected = "ok" if role.allows(needed) else "403"
                got = "ok" if r.status_code not in (401, 403, 404) else str(r.status_code)
                if got != expected:
                    wrong.append(
                        f"{kind} {role.value} {method} {template}: {r.status_code} {r.text[:120]}"
                    )
    assert not wrong, "\n".join(wrong)


UNKNOWN = {
    "test": "0123456789ab",
    "run": "ba9876543210",
    "org": "nonesuch",
    "reg": "reg_aaaaaaaaaaaa",
    "pool": "pool_bbbbbbbbbbbb",
    "probe": "probe_cccccccccccc",
}
# Everything of organisation globex a caller of acme might try, JSON, HTML and SSE.
CROSS: list[tuple[str, str, Any, bool]] = [
    ("GET", "/api/v1/tests/{test}", None, False),
    ("PUT", "/api/v1/tests/{test}", DEFINITION, False),
    ("DELETE", "/api/v1/tests/{test}", None, False),
    ("POST", "/api/v1/tests/{test}/runs", None, False),
    ("POST", "/api/v1/tests/{test}/duplicate", None, False),
    ("GET", "/api/v1/runs?test_id={test}", None, False),
    ("GET", "/api/v1/runs/{run}", None, False),
    ("POST", "/api/v1/runs/{run}/stop", None, False),
    ("DELETE", "/api/v1/runs/{run}", None, False),
    ("GET", "/api/v1/runs/{run}/results", None, False),
    ("GET", "/api/v1/runs/{run}/series", None, False),
    ("GET", "/api/v1/runs/{run}/samples?format=csv", None, False),
    ("GET", "/api/v1/runs/{run}/samples?format=parquet", None, False),
    ("GET", "/api/v1/runs/{run}/webhooks", None, False),
    ("GET", "/api/v1/runs/{run}/endpoints", None, False),
    ("GET", "/api/v1/runs/{run}/events?follow=false", None, False),
    ("GET", "/api/v1/runs/{run}/calls", None, False),
    ("GET", "/runs/{run}/calls", None, True),
    ("GET", "/api/v1/compare?runs={mine},{run}", None, False),
    ("GET", "/api/v1/registrars/{reg}", None, False),
    ("PUT", "/api/v1/registrars/{reg}", REGISTRAR, False),
    ("DELETE", "/api/v1/registrars/{reg}", None, False),
    ("GET", "/api/v1/pools/{pool}", None, False),
    ("PUT", "/api/v1/pools/{pool}", POOL, False),
    ("DELETE", "/api/v1/pools/{pool}", None, False),
    ("GET", "/pools/{pool}", None, True),
    ("POST", "/pools/{pool}", {"name": "x", "csv": "a,b"}, True),
    ("POST", "/pools/{pool}/delete", {}, True),
    ("POST", "/registrars/{reg}/delete", {}, True),
    ("GET", "/api/v1/probes/{probe}", None, False),
    ("PUT", "/api/v1/probes/{probe}", PROBE, False),
    ("DELETE", "/api/v1/probes/{probe}", None, False),
    ("GET", "/api/v1/probes/{probe}/history", None, False),
    ("GET", "/probes/{probe}", None, True),
    ("POST", "/probes/{probe}/delete", {}, True),
    ("POST", "/probes/{probe}/enabled", {"enabled": "1"}, True),
    ("GET", "/api/v1/projects/{org}-p/webhooks", None, False),
    ("PUT", "/api/v1/projects/{org}-p/webhooks", {"webhooks": HOOK}, False),
    ("GET", "/api/v1/projects/{org}-p/status-page", None, False),
    ("PUT", "/api/v1/projects/{org}-p/status-page", {"public": True}, False),
    ("POST", "/probes/status-page", {"project": "{org}-p", "public": "1"}, True),
    ("POST", "/probes/webhooks", {"project": "{org}-p", "url": "http://127.0.0.1:9/h"}, True),
    ("POST", "/probes/webhooks/delete", {"project": "{org}-p", "url": "http://x.example"}, True),
    ("GET", "/api/v1/orgs/{org}", None, False),
    ("PUT", "/api/v1/orgs/{org}/members/acme-viewer", {"role": "viewer"}, False),
    ("POST", "/api/v1/orgs/{org}/projects", {"project": "stolen"}, False),
    ("POST", "/api/v1/projects/{org}-p/keys", {"name": "k", "role": "viewer"}, False),
    ("GET", "/tests/{test}", None, True),
    ("GET", "/tests/{test}/edit", None, True),
    ("POST", "/tests/{test}", {"name": "x"}, True),
    ("POST", "/tests/{test}/run", {}, True),
    ("POST", "/tests/{test}/duplicate", {}, True),
    ("POST", "/tests/{test}/delete", {}, True),
    ("GET", "/runs/{run}", None, True),
    ("GET", "/runs/{run}/live", None, True),
    ("GET", "/runs/{run}/stream", None, True),
    ("GET", "/runs/{run}/endpoints", None, True),
    ("GET", "/runs/{run}/endpoints/stream", None, True),
    ("GET", "/runs/{run}/replay", None, True),
    ("GET", "/runs/{run}/replay/frame?at=1", None, True),
    ("POST", "/runs/{run}/stop", {}, True),
    ("POST", "/runs/{run}/delete", {}, True),
    ("GET", "/compare?runs={mine}&runs={run}", None, True),
    ("GET", "/orgs/{org}", None, True),
    ("POST", "/orgs/{org}", {"op": "project", "project": "stolen"}, True),
]


async def test_no_role_of_one_organisation_reaches_another(world: World) -> None:
    """A member or key of acme, with every role, asks for globex's tests, runs,
    results, exports, replay, comparisons, webhook log, event streams and
    administration: each answer is exactly the one for an id that does not exist."""
    theirs = {
        "test": world.tests["globex"],
        "run": world.runs["globex"][0],
        "org": "globex",
        "reg": world.registrars["globex"],
        "pool": world.pools["globex"],
        "probe": world.probes["globex"],
    }
    mine = world.runs["acme"][0]
    callers = [(kind, role) for kind in ("user", "key") for role in ROLES]
    differ: list[str] = []
    for method, template, body, html in CROSS:
        real = template.format(mine=mine, **theirs)
        fake = template.format(mine=mine, **UNKNOWN)
        body_a, body_b = (
            (
                {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
                for ids in (theirs, UNKNOWN)
            )
            if isinstance(body, dict) and any("{org}" in str(v) for v in body.values())
            else (body, body)
        )
        for who in callers:
            a, b = await asyncio.wait_for(
                asyncio.gather(
                    call(world, who, method, real, body_a, html),
                    call(world, who, method, fake, body_b, html),
                ),
                60,
            )
            text_a, text_b = a.text, b.text
            for name in ("test", "run", "org", "reg", "pool", "probe"):
                text_a = text_a.replace(theirs[name], "<id>")
                text_b = text_b.replace(UNKNOWN[name], "<id>")
            listed = "?test_id=" in template  # a filter, not an id: an empty list either way
            hidden = a.status_code in (403, 404) or (listed and a.status_code == 200)
            if not hidden or (a.status_code, text_a) != (b.status_code, text_b):
                differ.append(
                    f"{who[0]} {who[1].value} {method} {template}: "
                    f"{a.status_code} {text_a[:100]!r} vs {b.status_code} {text_b[:100]!r}"
                )
    assert not differ, "\n".join(differ)
    # Lists and the global event stream never name globex's test or runs.
    secret = [world.tests["globex"], *world.runs["globex"]]
    for who in callers:
        for path, html in (
            ("/api/v1/tests", False),
            ("/api/v1/runs", False),
            ("/api/v1/events?since=0&follow=false", False),
            ("/", True),
            ("/runs", True),
        ):
            r = await asyncio.wait_for(call(world, who, "GET", path, None, html), 60)
            assert r.status_code == 200, (who, path, r.text)
            assert not any(s in r.text for s in secret), (who, path)
            assert world.tests["acme"] in r.text or "runs" in path or "events" in path, (who, path)


async def test_audio_belongs_to_the_project_it_was_uploaded_into(world: World) -> None:
    """An upload is for one project: another organisation's reference answers exactly
    as an unknown one (reading it, or naming it in a test) for every role of acme, by
    session and by key; the same file uploaded into acme's project is acme's too."""
    from callmeter_common import wav

    data = wav.BUILTIN["speech-en"].read_bytes()
    wav_headers = {**bearer(ROOT), "Content-Type": "application/octet-stream"}
    r = await world.client.post("/api/v1/audio?project=globex-p", content=data, headers=wav_headers)
    assert r.status_code == 201 and r.json()["project"] == "globex-p", r.text
    theirs, unknown = r.json()["audio"], "sha256:" + "0" * 64
    callers = [(kind, role) for kind in ("user", "key") for role in ROLES]
    differ = []
    for who in callers:
        for method, path, body in [
            ("GET", "/api/v1/audio/{ref}", None),
            (
                "POST",
                "/api/v1/tests",
                {
                    **DEFINITION,
                    "project": "acme-p",
                    "groups": [{"name": "A", "endpoints": 1, "audio": "{ref}"}],
                },
            ),
        ]:
            answers = []
            for ref in (theirs, unknown):
                filled = json.loads(json.dumps(body).replace("{ref}", ref)) if body else None
                got = await call(world, who, method, path.format(ref=ref), filled, False)
                answers.append((got.status_code, got.text.replace(ref, "<ref>")))
            if answers[0] != answers[1] or answers[0][0] not in (403, 404, 422):
                differ.append(f"{who[0]} {who[1].value} {method} {path}: {answers}")
    assert not differ, "\n".join(differ)
    r = await call(world, ("key", AccessRole.EDITOR), "POST", "/api/v1/tests", filled, False)
    assert r.status_code == 422 and r.json()["error"]["field"] == "groups.0.audio", r.text
    # Uploading takes an Editor of the project named (a key: its own project).
    key = world.keys[AccessRole.EDITOR]
    r = await world.client.post(
        "/api/v1/audio?project=globex-p", content=data, headers={**bearer(key)}
    )
    assert r.status_code == 403 and r.json()["error"]["field"] == "project"
    r = await world.client.post(
        "/api/v1/audio", content=data, headers=bearer(world.keys[AccessRole.TESTER])
    )
    assert r.status_code == 403
    r = await world.client.post("/api/v1/audio", content=data, headers=bearer(key))
    assert r.status_code == 201 and r.json() == {**r.json(), "audio": theirs, "project": "acme-p"}
    test = {**DEFINITION, "groups": [{"name": "A", "endpoints": 1, "audio": theirs}]}
    r = await world.client.post("/api/v1/tests", json=test, headers=bearer(key))
    assert r.status_code == 201 and r.json()["definition"]["project"] == "acme-p", r.text
    r = await world.client.get(f"/api/v1/audio/{theirs}", headers=bearer(key))
    assert r.status_code == 200 and r.json()["clock_rate"] == 16000


async def test_an_owner_deletes_an_organisation_and_its_secrets_are_destroyed(
    world: World, own_db: str
) -> None:
    """Only an Owner of it, never the default organisation, not while a run is active.
    Then its runs, tests, registrars, pools and audio are gone, every secret of its
    projects is deleted from the store, its members and keys have no access, and its
    names are never used again."""
    import psycopg

    from callmeter_common import wav
    from callmeter_events import RunRejected

    c = world.client
    await world.root("POST", "/api/v1/orgs", {"org": "initech"})
    await world.root("POST", "/api/v1/orgs/initech/projects", {"project": "initech-p"})
    sessions = {}
    for role in (AccessRole.OWNER, AccessRole.ADMIN):
        name = f"initech-{role.value}"
        await world.root("POST", "/api/v1/users", {"username": name, "password": PASSWORD})
        await world.root("PUT", f"/api/v1/orgs/initech/members/{name}", {"role": role.value})
        sessions[role] = await login(c, name, PASSWORD)
    key = await world.root(
        "POST", "/api/v1/projects/initech-p/keys", {"name": "k", "role": "editor"}
    )
    test = {
        **DEFINITION,
        "project": "initech-p",
        "groups": [
            {"name": "A", "endpoints": 1, "accounts": [{"username": "u", "password": "Canary-1"}]}
        ],
        "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": "Canary-2"}],
    }
    test_id = (await world.root("POST", "/api/v1/tests", test))["id"]
    run_id = (await world.root("POST", f"/api/v1/tests/{test_id}/runs"))["id"]
    await world.root("POST", "/api/v1/registrars", {**REGISTRAR, "project": "initech-p"})
    await world.root(
        "POST", "/api/v1/pools", {"name": "p", "csv": "u1,Canary-3", "project": "initech-p"}
    )
    data = wav.BUILTIN["speech-en"].read_bytes()
    r = await c.post("/api/v1/audio?project=initech-p", content=data, headers=bearer(ROOT))
    assert r.status_code == 201
    caller = {**test["groups"][0], "accounts": [{"username": "u", "password": "Canary-4"}]}
    probe_def = {**test, "webhooks": [], "groups": [caller]}
    await world.root(
        "POST", "/api/v1/probes", {**PROBE, "definition": probe_def, "project": "initech-p"}
    )
    hooks = {"webhooks": [{"url": "http://127.0.0.1:9/probe", "secret": "Canary-5"}]}
    await world.root("PUT", "/api/v1/projects/initech-p/webhooks", hooks)
    await world.root("PUT", "/api/v1/projects/initech-p/status-page", {"public": True})

    def rows(sql: str) -> int:
        with psycopg.connect(own_db) as conn:
            return int(conn.execute(sql, ("initech-p",)).fetchone()[0])

    count_secrets = "SELECT count(*) FROM secrets WHERE project = %s"
    # the test's password and webhook secret, the pool's, the probe's, the project webhook's
    assert rows(count_secrets) == 5

    def as_user(role: AccessRole) -> dict[str, str]:
        cookie, csrf = sessions[role]
        return {"Cookie": f"callmeter_session={cookie}", "X-CSRF-Token": csrf}

    # An Admin may not; another organisation's Owner gets the unknown answer.
    r = await c.delete("/api/v1/orgs/initech", headers=as_user(AccessRole.ADMIN))
    assert r.status_code == 403
    acme_owner = world.users[AccessRole.OWNER]
    other = {"Cookie": f"callmeter_session={acme_owner[0]}", "X-CSRF-Token": acme_owner[1]}
    gone = await c.delete("/api/v1/orgs/initech", headers=other)
    unknown = await c.delete("/api/v1/orgs/nonesuch", headers=other)
    assert gone.status_code == 404
    assert gone.text.replace("initech", "<o>") == unknown.text.replace("nonesuch", "<o>")
    r = await c.delete("/api/v1/orgs/default", headers=bearer(ROOT))
    assert r.status_code == 409 and r.json()["error"]["field"] == "org"
    # Not while its run is active (no scheduler here: the run waits until rejected).
    r = await c.delete("/api/v1/orgs/initech", headers=as_user(AccessRole.OWNER))
    assert r.status_code == 409 and run_id in r.json()["error"]["message"]
    platform = c._transport.app.state.platform  # type: ignore[attr-defined]
    await platform.bus.publish(RunRejected(run_id=run_id, reason="test: not run"))
    for _ in range(100):
        if (await world.root("GET", f"/api/v1/runs/{run_id}"))["status"] == "CANNOT_RUN_FOR_NOW":
            break
        await asyncio.sleep(0.1)
    # On the page, as its Owner: the name typed to confirm.
    cookie, csrf = sessions[AccessRole.OWNER]
    form = {"op": "delete_org", "confirm": "initech", "csrf_token": csrf}
    page = await c.get("/orgs/initech", headers={"Cookie": f"callmeter_session={cookie}"})
    assert 'id="delete-org"' in page.text
    r = await c.post(
        "/orgs/initech",
        data={**form, "confirm": "x"},
        headers={"Cookie": f"callmeter_session={cookie}"},
    )
    assert r.status_code == 422 and "to delete the organisation" in r.text
    r = await c.post("/orgs/initech", data=form, headers={"Cookie": f"callmeter_session={cookie}"})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    # Its secrets are destroyed, its rows gone; nobody of it gets in any more.
    assert rows(count_secrets) == 0
    tables = ("registrars", "account_pools", "audio_uploads", "probes", "project_webhooks")
    for table in (*tables, "status_pages"):
        assert rows(f"SELECT count(*) FROM {table} WHERE project = %s") == 0, table  # noqa: S608
    assert rows("SELECT count(*) FROM runs WHERE doc->'definition'->>'project' = %s") == 0
    assert (await c.get(f"/api/v1/tests/{test_id}", headers=bearer(ROOT))).status_code == 404
    assert (await c.get("/api/v1/tests", headers=bearer(key["key"]))).status_code == 401
    me = await c.get("/api/v1/me", headers=as_user(AccessRole.OWNER))
    assert me.status_code == 200 and me.json()["orgs"] == {}
    r = await c.get("/orgs/initech", headers=bearer(ROOT))
    assert r.status_code == 404
    # Its names stay taken: no other organisation inherits its projects.
    r = await c.post("/api/v1/orgs", json={"org": "initech"}, headers=bearer(ROOT))
    assert r.status_code == 409
    r = await c.post(
        "/api/v1/orgs/acme/projects", json={"project": "initech-p"}, headers=bearer(ROOT)
    )
    assert r.status_code == 409
    audit = (await world.root("GET", "/api/v1/orgs/default"))["audit"]
    actions = {(a["action"], a["target"]) for a in audit}
    assert ("org_deleted", "initech") in actions


async def test_a_session_needs_its_csrf_token_to_change_anything(world: World) -> None:
    """Without the session's token (or with another session's) every state-changing
    form and HTMX request is 403 and changes nothing; a Bearer key needs none."""
    cookie, csrf = world.users[AccessRole.OWNER]
    _, other_csrf = world.users[AccessRole.EDITOR]
    test = world.tests["acme"]
    jar = {"Cookie": f"callmeter_session={cookie}", "Accept": "text/html"}
    before = len((await world.root("GET", f"/api/v1/runs?test_id={test}"))["items"])
    for fields, headers in (
        ({}, {}),
        ({"csrf_token": other_csrf}, {}),
        ({"csrf_token": ""}, {"X-CSRF-Token": "forged"}),
    ):
        r = await world.client.post(f"/tests/{test}/run", data=fields, headers={**jar, **headers})
        assert r.status_code == 403 and "CSRF" in r.text, r.text
        r = await world.client.post(
            "/api/v1/tests", json=DEFINITION, headers={**jar, **headers, "Accept": "*/*"}
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
    assert len((await world.root("GET", f"/api/v1/runs?test_id={test}"))["items"]) == before
    r = await world.client.post(f"/tests/{test}/run", data={"csrf_token": csrf}, headers=jar)
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    r = await world.client.post(f"/tests/{test}/run", headers={"X-CSRF-Token": csrf, **jar})
    assert r.status_code == 303  # HTMX sends it as a header (base.html's hx-headers)
    r = await world.client.post(
        f"/api/v1/tests/{test}/runs", headers=bearer(world.keys[AccessRole.TESTER])
    )
    assert r.status_code == 202
    after = (await world.root("GET", f"/api/v1/runs?test_id={test}"))["items"]
    assert len(after) == before + 3
    # Every post form of every page carries the session's token (pools and registrars too).
    pages = ["/", "/runs", "/tests/new", f"/tests/{test}", f"/runs/{world.runs['acme'][0]}"]
    pages += ["/registrars", "/pools", f"/pools/{world.pools['acme']}", "/orgs/acme", "/account"]
    for path in pages:
        page = await world.client.get(path, headers=jar)
        assert page.status_code == 200, (path, page.status_code)
        posts = re.findall(r'<form method="post".*?</form>', page.text, re.S)
        bare = [f[:80] for f in posts if f'name="csrf_token" value="{csrf}"' not in f]
        assert not bare, (path, bare)
    # The cookie is HttpOnly and SameSite=Lax.
    r = await world.client.post("/login", data={"username": "acme-owner", "password": PASSWORD})
    flags = r.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags


async def test_logins_passwords_keys_and_the_audit_trail(world: World) -> None:
    c = world.client
    # A wrong password: 401 on the page; the sixth failure in a row is refused outright.
    for _ in range(5):
        r = await c.post("/login", data={"username": "acme-viewer", "password": "wrong one!"})
        assert r.status_code == 401 and "wrong username or password" in r.text
    r = await c.post("/login", data={"username": "acme-viewer", "password": PASSWORD})
    assert r.status_code == 429 and "too many failed logins" in r.text
    # A password change ends the user's other sessions.
    old_cookie, csrf = world.users[AccessRole.EDITOR]
    headers = {"Cookie": f"callmeter_session={old_cookie}", "Accept": "text/html"}
    r = await c.post(
        "/account/password",
        data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": "another long one"},
        headers=headers,
    )
    assert r.status_code == 200 and 'id="password-changed"' in r.text
    new_cookie = r.cookies["callmeter_session"]
    assert (await c.get("/", headers=headers)).status_code == 303  # the old session ended
    r = await c.get("/", headers={"Cookie": f"callmeter_session={new_cookie}"})
    assert r.status_code == 200
    # A key works until revoked; its last use is shown; the key itself never again.
    key = world.keys[AccessRole.VIEWER]
    assert (await c.get("/api/v1/tests", headers=bearer(key))).status_code == 200
    org = await world.root("GET", "/api/v1/orgs/acme")
    mine = next(k for k in org["keys"] if key.startswith(k["prefix"]))
    assert mine["last_used_at"] is not None and mine["revoked_at"] is None
    assert key not in str(org) and len(mine["prefix"]) == 12
    await world.root("DELETE", f"/api/v1/keys/{mine['id']}")
    r = await c.get("/api/v1/tests", headers=bearer(key))
    assert r.status_code == 401
    # Registrars and pools are audited too: created, edited, deleted, by whom.
    editor = world.keys[AccessRole.EDITOR]
    done = []
    for kind, body in (("registrars", REGISTRAR), ("pools", POOL)):
        r = await c.post(
            f"/api/v1/{kind}", json={**body, "name": "audited"}, headers=bearer(editor)
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        r = await c.put(
            f"/api/v1/{kind}/{rid}", json={**body, "name": "re"}, headers=bearer(editor)
        )
        assert r.status_code == 200, r.text
        assert (await c.delete(f"/api/v1/{kind}/{rid}", headers=bearer(editor))).status_code == 204
        done.append((kind[:-1], rid))
    org = await world.root("GET", "/api/v1/orgs/acme")
    lines = {(a["actor"], a["action"], a["project"], a["target"]) for a in org["audit"]}
    prefix = f"key:{editor[:12]}"
    for kind, rid in done:
        for verb in ("created", "edited", "deleted"):
            assert (prefix, f"{kind}_{verb}", "acme-p", rid) in lines, (kind, verb, lines)
    others = await world.root("GET", "/api/v1/orgs/globex")
    assert not any(a["target"] in {rid for _, rid in done} for a in others["audit"])
    # The audit trail names who did what; Admins see it, Editors do not.
    actions = {(a["actor"], a["action"]) for a in org["audit"]}
    assert {
        ("env-key", "test_created"),
        ("env-key", "run_started"),
        ("env-key", "key_revoked"),
        ("user:acme-editor", "password_changed"),
        ("user:acme-owner", "login"),
    } <= actions
    cookie, _ = world.users[AccessRole.ADMIN]
    r = await c.get("/orgs/acme", headers={"Cookie": f"callmeter_session={cookie}"})
    assert r.status_code == 200 and 'id="audit"' in r.text and "key_revoked" in r.text
    # No password or key is in any event: the access stream holds hashes only.
    from callmeter_common.bus import Bus
    from callmeter_events import ACCESS

    settings = c._transport.app.state.platform.settings  # type: ignore[attr-defined]
    bus = await Bus.connect(settings.nats_url, "test")
    try:
        info = await bus.js.stream_info(ACCESS.name)
        raw = b""
        for seq in range(1, info.state.last_seq + 1):
            raw += (await bus.js.get_msg(ACCESS.name, seq)).data or b""
    finally:
        await bus.close()
    assert b"argon2id" in raw
    for secret in (PASSWORD, "another long one", *world.keys.values()):
        assert secret.encode() not in raw


async def test_the_first_administrator_needs_the_setup_token(own_nats, own_db) -> None:  # type: ignore[no-untyped-def]
    """Unclaimed: closed. Every page redirects to /setup, which says how to claim
    the installation; every JSON and SSE route is 401; the probes and the docs stay
    open. /setup with a wrong token: 403; with the token: an Owner of the default
    organisation, logged in, with the demo test; then every page needs a login and
    /setup is closed."""
    settings = ApiSettings(nats_url=own_nats.url, database_url=own_db, setup_token=SETUP)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            html = {"Accept": "text/html"}
            for page in ("/", "/runs", "/tests/new", "/registrars", "/system", "/orgs/default"):
                r = await c.get(page, headers=html)
                assert r.status_code == 303 and r.headers["location"] == "/setup", page
            r = await c.post("/tests", data={"name": "x"}, headers=html)
            assert r.status_code == 303 and r.headers["location"] == "/setup"
            setup_page = await c.get("/setup")
            assert 'id="unclaimed"' in setup_page.text and "callmeter up" in setup_page.text
            assert SETUP not in setup_page.text
            for method, path in [
                ("GET", "/api/v1/tests"),
                ("POST", "/api/v1/tests"),
                ("GET", "/api/v1/events"),
                ("GET", "/api/v1/system"),
                ("GET", "/api/v1/me"),
                ("GET", "/runs/unknown/stream"),  # the run page's SSE
            ]:
                r = await c.request(method, path, headers={"Accept": "text/event-stream"})
                assert r.status_code == 401, (method, path, r.status_code)
                assert "not claimed yet" in r.json()["error"]["message"]
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).status_code in (200, 503)  # open: says why
            assert (await c.get("/openapi.json")).status_code == 200
            form = {"username": "boss", "password": PASSWORD}
            r = await c.post("/setup", data={**form, "token": "guess"})
            assert r.status_code == 403 and "setup token" in r.text
            r = await c.post("/setup", data={**form, "token": SETUP[:-1]})
            assert r.status_code == 403
            r = await c.post("/setup", data={**form, "token": SETUP, "password": "short"})
            assert r.status_code == 422 and "at least 10 characters" in r.text
            r = await c.post("/setup", data={**form, "token": SETUP})
            assert r.status_code == 303 and r.headers["location"] == "/"
            cookie = r.cookies["callmeter_session"]
            c.cookies.clear()
            # Claimed: nobody else gets in, and the token is spent.
            r = await c.get("/runs", headers={"Accept": "text/html"})
            assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fruns"
            r = await c.get("/api/v1/tests")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = await c.post("/setup", data={**form, "username": "mallory", "token": SETUP})
            assert r.status_code == 409
            r = await c.get("/api/v1/me", headers={"Cookie": f"callmeter_session={cookie}"})
            assert r.json()["orgs"] == {"default": "owner"}
            r = await c.get("/", headers={"Cookie": f"callmeter_session={cookie}"})
            assert r.status_code == 200 and "boss" in r.text and "Demo:" in r.text
            # The installation's Owner makes an organisation and becomes its Owner.
            page = await c.get("/orgs/default", headers={"Cookie": f"callmeter_session={cookie}"})
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf and "Create organisation" in page.text
            r = await c.post(
                "/orgs/default",
                data={"op": "org", "org": "acme", "csrf_token": csrf[1]},
                headers={"Cookie": f"callmeter_session={cookie}"},
            )
            assert r.status_code == 303 and r.headers["location"] == "/orgs/acme"
            r = await c.get("/api/v1/me", headers={"Cookie": f"callmeter_session={cookie}"})
            assert r.json()["orgs"] == {"default": "owner", "acme": "owner"}


async def test_callmeter_users_creates_a_member_and_resets_a_password(own_nats, own_db) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "callmeter")
    env = {**os.environ, "CALLMETER_NATS_URL": own_nats.url, "CALLMETER_DATABASE_URL": own_db}

    def users(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, "users", *args],
            env={**env, "CALLMETER_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=180,
        )

    done = users("create", "ann", "--org", "acme", "--role", "editor")
    assert done.returncode == 0 and "editor of organisation 'acme'" in done.stdout, done.stderr
    again = users("create", "ann")
    assert again.returncode != 0 and "exists already" in again.stderr
    short = users("create", "bob", password="short")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    settings = ApiSettings(nats_url=own_nats.url, database_url=own_db)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            cookie, _ = await login(c, "ann", PASSWORD)
            r = await c.get("/api/v1/me", headers={"Cookie": f"callmeter_session={cookie}"})
            assert r.json()["orgs"] == {"acme": "editor"}
            done = await asyncio.to_thread(
                users, "reset-password", "ann", password="a new password"
            )
            assert done.returncode == 0, done.stderr
            await asyncio.sleep(0.5)  # the API folds the change
            r = await c.get("/api/v1/me", headers={"Cookie": f"callmeter_session={cookie}"})
            assert r.status_code == 401  # the session ended with the old password
            r = await c.post("/login", data={"username": "ann", "password": PASSWORD})
            assert r.status_code == 401
            await login(c, "ann", "a new password")
