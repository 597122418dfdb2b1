"""API keys scoped per project: an integration sees only its project's tests and runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from callmeter_common.procs import free_port, wait_for_port
from tests.support.sse import read_sse

pytestmark = pytest.mark.integration

TEST = {
    "name": "scoped",
    "duration_s": 2,
    "groups": [
        {"name": "A", "endpoints": 2, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"]},
    ],
}
# Other group names: one worker host runs both at once, and endpoint ids must differ there.
GLOBEX = {
    **TEST,
    "project": "globex",
    "groups": [
        {**TEST["groups"][0], "name": "G", "calls": "H"},
        {**TEST["groups"][1], "name": "H"},
    ],
}


@pytest.fixture(scope="module")
def keyed_api(platform):  # type: ignore[no-untyped-def]
    """A second API process of the same platform, with one scoped and one global key."""
    port = free_port()
    platform.start_replica(
        "api", "api-keys", CALLMETER_PORT=str(port), CALLMETER_API_KEYS="acme:K1,ADMIN"
    )
    try:
        wait_for_port("127.0.0.1", port, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        platform.kill("api-keys")


def test_a_project_key_sees_only_its_project(platform, keyed_api):  # type: ignore[no-untyped-def]
    http = httpx.Client(base_url=keyed_api, timeout=30)

    def call(key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = http.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
        is_json = r.headers.get("content-type", "").startswith("application/json")
        return r.status_code, r.json() if is_json and r.content else r.content

    def hidden(kind: str, id_: str) -> dict[str, Any]:
        return {
            "error": {"code": "not_found", "message": f"no {kind} {id_!r}", "field": f"{kind}_id"}
        }

    # K1 creates without a project and lands in acme; naming another project is refused.
    status, body = call("K1", "POST", "/api/v1/tests", TEST)
    assert status == 201, body
    acme_test = body["id"]
    assert call("K1", "GET", f"/api/v1/tests/{acme_test}")[1]["definition"]["project"] == "acme"
    status, body = call("K1", "POST", "/api/v1/tests", {**TEST, "project": "globex"})
    assert status == 403 and body["error"]["field"] == "project", body
    status, body = call("ADMIN", "POST", "/api/v1/tests", GLOBEX)
    assert status == 201, body
    globex_test = body["id"]
    # Both run at once: K1 starts its own, ADMIN the globex one.
    status, body = call("K1", "POST", f"/api/v1/tests/{acme_test}/runs")
    assert status == 202, body
    acme_run = body["id"]
    assert call("K1", "POST", f"/api/v1/tests/{globex_test}/runs") == (
        404,
        hidden("test", globex_test),
    )
    status, body = call("ADMIN", "POST", f"/api/v1/tests/{globex_test}/runs")
    assert status == 202, body
    globex_run = body["id"]

    # Lists: K1 only acme's, ADMIN both.
    _, tests = call("K1", "GET", "/api/v1/tests")
    assert {t["definition"]["project"] for t in tests["items"]} == {"acme"}
    assert acme_test in {t["test_id"] for t in tests["items"]}
    _, tests = call("ADMIN", "GET", "/api/v1/tests?limit=1000")
    assert {acme_test, globex_test} <= {t["test_id"] for t in tests["items"]}
    _, runs = call("K1", "GET", "/api/v1/runs")
    assert [r["run_id"] for r in runs["items"]] == [acme_run] and runs["total"] == 1
    assert call("K1", "GET", f"/api/v1/runs?test_id={globex_test}")[1]["total"] == 0
    _, runs = call("ADMIN", "GET", "/api/v1/runs?limit=1000")
    assert {acme_run, globex_run} <= {r["run_id"] for r in runs["items"]}

    # Every route of the other project's test: the same 404 as an unknown id.
    for method, path, body in (
        ("GET", f"/api/v1/tests/{globex_test}", None),
        ("PUT", f"/api/v1/tests/{globex_test}", TEST),
        ("POST", f"/api/v1/tests/{globex_test}/duplicate", None),
        ("DELETE", f"/api/v1/tests/{globex_test}", None),
    ):
        assert call("K1", method, path, body) == (404, hidden("test", globex_test)), path
    assert call("K1", "POST", f"/api/v1/runs/{globex_run}/stop") == (404, hidden("run", globex_run))

    for run_id in (acme_run, globex_run):
        platform.wait_status(run_id, {"COMPLETED"}, timeout=60)
    # ... and of its run, results, exports, events, traces and webhook log included.
    for path in (
        "",
        "/results",
        "/series",
        "/samples?format=csv",
        "/samples?format=parquet",
        "/endpoints",
        "/endpoints/{ep}-1",
        "/endpoints/{ep}-1/series",
        "/events?follow=false",
        "/webhooks",
    ):
        globex_path = f"/api/v1/runs/{globex_run}{path.format(ep='G')}"
        assert call("K1", "GET", globex_path) == (404, hidden("run", globex_run)), path
        assert call("ADMIN", "GET", globex_path)[0] == 200, path
        assert call("K1", "GET", f"/api/v1/runs/{acme_run}{path.format(ep='A')}")[0] == 200, path
    status, body = call("K1", "GET", f"/api/v1/compare?runs={acme_run},{globex_run}")
    assert status == 404 and body["error"]["field"] == "runs"
    assert call("ADMIN", "GET", f"/api/v1/compare?runs={acme_run},{globex_run}")[0] == 200
    assert call("K1", "GET", "/api/v1/workers")[1]["total"] >= 1  # shared infrastructure

    # The global event stream: K1 gets its run's events and none of globex's.
    def ids(key: str, path: str, **params: Any) -> set[int]:
        headers = {"Authorization": f"Bearer {key}"}
        with http.stream("GET", path, params={"follow": "false", **params}, headers=headers) as r:
            assert r.status_code == 200
            return {i for i, _ in read_sse(r)}

    acme_ids = ids("K1", f"/api/v1/runs/{acme_run}/events")
    globex_ids = ids("ADMIN", f"/api/v1/runs/{globex_run}/events")
    since = min(acme_ids | globex_ids) - 1
    seen_by_k1 = ids("K1", "/api/v1/events", since=since)
    assert acme_ids <= seen_by_k1 and not seen_by_k1 & globex_ids
    assert acme_ids | globex_ids <= ids("ADMIN", "/api/v1/events", since=since)

    # A key's own test can be deleted; then it is gone for everyone.
    assert call("K1", "DELETE", f"/api/v1/tests/{acme_test}")[0] == 204
    assert call("ADMIN", "GET", f"/api/v1/tests/{acme_test}") == (404, hidden("test", acme_test))
    http.close()


def test_registrars_pools_and_secrets_stay_in_their_project(platform, keyed_api):  # type: ignore[no-untyped-def]
    http = httpx.Client(base_url=keyed_api, timeout=30)

    def call(key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = http.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
        return r.status_code, r.json() if r.content else None

    status, reg = call(
        "ADMIN",
        "POST",
        "/api/v1/registrars",
        {"name": "pbx", "host": "pbx.globex", "project": "globex"},
    )
    assert status == 201, reg
    status, pool = call(
        "ADMIN", "POST", "/api/v1/pools", {"name": "g", "csv": "g1,pw", "project": "globex"}
    )
    assert status == 201, pool
    # K1 (acme) neither lists nor reaches them: answered as unknown ids.
    assert all(p["project"] == "acme" for p in call("K1", "GET", "/api/v1/pools")[1]["items"])
    assert all(r["project"] == "acme" for r in call("K1", "GET", "/api/v1/registrars")[1]["items"])
    for method in ("GET", "DELETE"):
        status, body = call("K1", method, f"/api/v1/pools/{pool['id']}")
        assert (status, body["error"]["field"]) == (404, "pool_id")
        status, body = call("K1", method, f"/api/v1/registrars/{reg['id']}")
        assert (status, body["error"]["field"]) == (404, "registrar_id")
    status, body = call("K1", "PUT", f"/api/v1/pools/{pool['id']}", {"name": "mine", "csv": "x,y"})
    assert status == 404, body
    status, body = call("K1", "POST", "/api/v1/pools", {"name": "g", "project": "globex"})
    assert (status, body["error"]["field"]) == (403, "project")
    # A K1 test naming them, or another project's secret reference: 422 on that field.
    group = {"name": "A", "endpoints": 1, "registrar": {"host": "pbx.acme"}}
    for extra, field in (
        ({"account_pool": pool["id"]}, "groups.0.account_pool"),
        ({"registrar_id": reg["id"]}, "groups.0.registrar_id"),
    ):
        test = {"name": "t", "duration_s": 1, "groups": [{**group, **extra}]}
        status, body = call("K1", "POST", "/api/v1/tests", test)
        assert (status, body["error"]["field"]) == (422, field), body
    globex = {
        "name": "t",
        "project": "globex",
        "duration_s": 1,
        "groups": [{**group, "accounts": [{"username": "g1", "password": "pw"}]}],
    }
    status, saved = call("ADMIN", "POST", "/api/v1/tests", globex)
    assert status == 201, saved
    ref = saved["definition"]["groups"][0]["accounts"][0]["password_ref"]
    stolen = {
        "name": "t",
        "duration_s": 1,
        "groups": [{**group, "accounts": [{"username": "g1", "password_ref": ref}]}],
    }
    status, body = call("K1", "POST", "/api/v1/tests", stolen)
    assert (status, body["error"]["field"]) == (422, "groups.0.accounts.0.password_ref"), body
