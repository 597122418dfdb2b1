"""Pages and the JSON API against a whole real platform (real calls, real NATS/Postgres)."""

from __future__ import annotations

import urllib.parse
import urllib.request

import httpx
import pytest

from callmeter_api.app import create_app
from callmeter_api.settings import ApiSettings

pytestmark = pytest.mark.integration

SMOKE = {
    "name": "ui smoke",
    "duration_s": 3,
    "groups": [
        {"name": "A", "endpoints": 2, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 2, "codecs": ["PCMU"]},
    ],
}


def post_form(platform, path: str, fields: dict[str, str]) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """POST a urlencoded form without following the redirect: (status, location, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(
        platform.base + path, data, {"Accept": "text/html", **platform.auth}
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, "", resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("location", ""), err.read().decode()


@pytest.fixture(scope="module")
def finished_run(platform):  # type: ignore[no-untyped-def]
    run_id = platform.run_test(SMOKE)
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"})
    assert run["status"] == "COMPLETED", run
    return run


def test_pages_have_clear_empty_states_and_errors(platform):  # type: ignore[no-untyped-def]
    for path, text in [
        ("/tests/new", "Save test"),
        ("/workers", "ONLINE"),
        ("/compare", "Pick two or more runs"),
        ("/runs", "Runs"),
    ]:
        status, html = platform.get_html(path)
        assert status == 200 and text in html, path
    status, html = platform.get_html("/runs/nope")
    assert status == 404 and "Not found" in html and "nope" in html


def test_the_editor_saves_a_test_and_puts_errors_next_to_fields(platform):  # type: ignore[no-untyped-def]
    fields = {
        "name": "from the form",
        "duration_s": "2",
        "buildup_s": "0",
        "groups.0.name": "A",
        "groups.0.endpoints": "1",
        "groups.0.calls": "B",
        "groups.0.codecs": "PCMA, PCMU",
        "groups.0.accounts": "1001,pw",
        "groups.1.name": "B",
        "groups.1.endpoints": "1",
        "groups.1.codecs": "PCMU",
    }
    # A group that calls a group that does not exist: 422, message beside that input.
    status, _, html = post_form(platform, "/tests", {**fields, "groups.0.calls": "Z"})
    assert status == 422
    assert 'id="f-groups-0-calls"' in html and 'aria-invalid="true"' in html
    assert "no group named &#39;Z&#39;" in html
    # "Add group" re-renders the editor with a third group, saving nothing.
    status, _, html = post_form(platform, "/tests", {**fields, "op": "add_group"})
    assert status == 200 and 'name="groups.2.name"' in html
    # A valid form saves and redirects to the test.
    status, location, _ = post_form(platform, "/tests", fields)
    assert status == 303 and location.startswith("/tests/")
    test_id = location.rsplit("/", 1)[1]
    _, test = platform.request("GET", f"/api/v1/tests/{test_id}")
    assert test["definition"]["groups"][0]["codecs"] == ["PCMA", "PCMU"]
    # The password went to the secret store: the test holds its reference (write-only).
    [account] = test["definition"]["groups"][0]["accounts"]
    assert account == {
        "username": "1001",
        "password_ref": account["password_ref"],
        "auth_username": None,
        "password_set": True,
    }
    assert account["password_ref"].startswith("sec_")
    # The editor shows a mask, never the password.
    _, html = platform.get_html(f"/tests/{test_id}/edit")
    assert "1001,********" in html and "1001,pw" not in html
    # Duplicate (the copy gets a secret of its own), then delete the copy.
    status, location, _ = post_form(platform, f"/tests/{test_id}/duplicate", {})
    copy_id = location.split("/")[2]
    _, copy = platform.request("GET", f"/api/v1/tests/{copy_id}")
    assert copy["definition"]["name"] == "from the form (copy)"
    [copied] = copy["definition"]["groups"][0]["accounts"]
    assert copied["password_set"] and copied["password_ref"] != account["password_ref"]
    assert post_form(platform, f"/tests/{copy_id}/delete", {})[0] == 303
    assert platform.request("GET", f"/api/v1/tests/{copy_id}")[0] == 404


def test_a_form_shown_again_never_carries_the_passwords_just_typed(platform):  # type: ignore[no-untyped-def]
    """After a validation error (and after "Add group"), the editor and the pool pages
    come back with each typed password or webhook secret empty and a note; a stored
    password's mask stays (it keeps the stored password)."""
    typed = ["Typed-Pw-7f3a", "Typed-Hook-9c2e", "Typed-Json-41d0", "Typed-Pool-5b8e"]
    fields = {
        "name": "typed secrets",
        "duration_s": "2",
        "groups.0.name": "A",
        "groups.0.endpoints": "1",
        "groups.0.calls": "Z",  # no such group: 422
        "groups.0.codecs": "PCMU",
        "groups.0.accounts": f"1001,{typed[0]}\n1002,,auth2",
        "webhooks.0.url": "http://127.0.0.1:9/hook",
        "webhooks.0.secret": typed[1],
    }
    for extra in ({}, {"op": "add_group"}):
        status, _, html = post_form(platform, "/tests", {**fields, **extra})
        assert status == (422 if not extra else 200), html[:300]
        assert typed[0] not in html and typed[1] not in html
        assert 'id="secrets-dropped"' in html and "1001,\n1002,,auth2" in html
        assert 'name="webhooks.0.url"' in html and "http://127.0.0.1:9/hook" in html
    draft = '{"name": "j", "groups": [{"name": "A", "accounts": [{"username": "u",'
    draft += f' "password": "{typed[2]}"' + "}]}], broken"
    status, _, html = post_form(platform, "/tests", {"definition": draft})
    assert status == 422 and typed[2] not in html and 'id="secrets-dropped"' in html
    assert "&#34;password&#34;: &#34;&#34;" in html  # the rest of the draft is kept
    # Nothing typed: no note.
    nothing = {**fields, "groups.0.accounts": "1001", "webhooks.0.secret": ""}
    status, _, html = post_form(platform, "/tests", nothing)
    assert status == 422 and 'id="secrets-dropped"' not in html

    # The pool pages: a new pool with an error, then an edit of a stored one.
    pool_csv = f"alice,{typed[3]}\nbob,,bob-auth"
    status, _, html = post_form(platform, "/pools", {"name": "", "csv": pool_csv})
    assert status == 422 and typed[3] not in html and 'id="secrets-dropped"' in html
    assert "alice,\nbob,,bob-auth" in html
    status, pool = platform.request(
        "POST", "/api/v1/pools", {"name": "typed", "csv": "alice,stored-pw-1"}
    )
    assert status == 201, pool
    edit = f"alice,********\ncarol,{typed[3]}"
    status, _, html = post_form(platform, f"/pools/{pool['id']}", {"name": "", "csv": edit})
    assert status == 422 and typed[3] not in html and "stored-pw-1" not in html
    assert "alice,********\ncarol," in html and 'id="secrets-dropped"' in html
    assert platform.request("DELETE", f"/api/v1/pools/{pool['id']}")[0] == 204


def test_the_editor_covers_call_options_scenario_thresholds_and_webhooks(platform):  # type: ignore[no-untyped-def]
    fields = {
        "name": "options",
        "duration_s": "2",
        "buildup_s": "",
        "groups.0.name": "A",
        "groups.0.endpoints": "1",
        "groups.0.calls": "B",
        "groups.0.codecs": "PCMU",
        "groups.0.options.prack": "supported",
        "groups.0.options.session_timer": "optional",
        "groups.0.options.session_expires_s": "300",
        "groups.0.options.min_se_s": "90",
        "groups.0.options.invite_timeout_s": "30",
        "groups.0.options.dscp_rtp": "46",
        "groups.0.scenario.0.at_s": "1",
        "groups.0.scenario.0.action": "dtmf",
        "groups.0.scenario.0.digits": "",
        "groups.0.scenario.0.method": "rfc4733",
        "groups.1.name": "B",
        "groups.1.endpoints": "1",
        "groups.1.codecs": "PCMU",
        "groups.1.options.ring_time_s": "0.5",
        "thresholds": "mos_avg >= 4\ncall_success_rate >= 99",
        "webhooks.0.url": "http://127.0.0.1:9/hook",
        "webhooks.0.secret": "",
    }
    # A DTMF action without digits: 422, the message beside that row's digits input.
    status, _, html = post_form(platform, "/tests", fields)
    assert status == 422, html[:500]
    assert '<p class="field-error" id="f-groups-0-scenario-0-digits-error">' in html
    assert "a dtmf action needs digits" in html
    # "Add action" adds a row to that group's scenario, saving nothing.
    status, _, html = post_form(platform, "/tests", {**fields, "op": "add_action:0"})
    assert status == 200 and 'name="groups.0.scenario.1.at_s"' in html
    status, location, _ = post_form(
        platform, "/tests", {**fields, "groups.0.scenario.0.digits": "1#"}
    )
    assert status == 303, location
    test_id = location.rsplit("/", 1)[1]
    _, test = platform.request("GET", f"/api/v1/tests/{test_id}")
    d = test["definition"]
    a_opts = d["groups"][0]["options"]
    assert (a_opts["prack"], a_opts["session_timer"], a_opts["session_expires_s"]) == (
        "supported",
        "optional",
        300,
    )
    assert a_opts["dscp_rtp"] == 46 and d["groups"][1]["options"]["ring_time_s"] == 0.5
    assert d["groups"][0]["scenario"] == [
        {"at_s": 1.0, "action": "dtmf", "digits": "1#", "method": "rfc4733", "codec": None}
    ]
    assert d["thresholds"] == ["mos_avg >= 4", "call_success_rate >= 99"]
    assert [w["url"] for w in d["webhooks"]] == ["http://127.0.0.1:9/hook"]
    # The edit page shows it all again, so saving it unchanged keeps it.
    status, html = platform.get_html(f"/tests/{test_id}/edit")
    assert status == 200 and "<option selected>supported</option>" in html
    assert 'value="1#"' in html and "call_success_rate &gt;= 99" in html
    assert 'value="http://127.0.0.1:9/hook"' in html
    # The JSON API names a nested scenario error's field the same way.
    bad = {
        **SMOKE,
        "groups": [
            {**SMOKE["groups"][0], "scenario": [{"at_s": 1, "action": "dtmf"}]},
            SMOKE["groups"][1],
        ],
    }
    status, body = platform.request("POST", "/api/v1/tests", bad)
    assert status == 422 and body["error"]["field"] == "groups.0.scenario.0.digits"


def test_the_run_page_shows_the_overview_and_the_stream_ends(platform, finished_run):  # type: ignore[no-untyped-def]
    run_id = finished_run["id"]
    status, html = platform.get_html(f"/runs/{run_id}")
    assert status == 200 and "COMPLETED" in html
    assert 'class="topology"' in html and "2 endpoints" in html  # the topology diagram
    assert 'id="groups"' in html and "Re-run" in html and "sse-connect" not in html
    # Results of the finished run: percentiles, distributions, charts, MOS histogram.
    assert 'id="results"' in html and 'id="percentiles"' in html
    row = html.split('data-metric="mos"', 1)[1].split("</tr>", 1)[0]
    assert row.count('class="num good"') >= 4  # a clean G.711 call: MOS p50/p95/p99 > 3.5
    assert 'id="outcome-distribution"' in html and "SUCCESS" in html
    codes = html.split('id="sip-codes"', 1)[1].split("</table>", 1)[0]
    assert '<td>200</td><td>OK</td><td class="num">4</td>' in codes
    charts = html.split('id="result-charts"', 1)[1].split("</div>", 1)[0]
    # Four series charts, then one MOS histogram per direction (never both in one).
    assert charts.count('class="chart"') == 6
    assert "MOS histogram, send: caller → callee" in charts
    assert "MOS histogram, recv: callee → caller" in charts
    assert "<polyline" in charts and "<rect" in charts
    status, live = platform.get_html(f"/runs/{run_id}/live")
    assert status == 200 and "<html" not in live and 'id="phases"' in live
    assert 'id="results"' not in live and "Show results" in live  # the stream stays light
    # A finished run's stream sends the state once, then `done`, and closes.
    stream = urllib.request.Request(platform.base + f"/runs/{run_id}/stream", headers=platform.auth)
    with urllib.request.urlopen(stream, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read().decode()
    assert body.startswith("event: live\n") and body.rstrip().endswith(
        "event: done\ndata: finished"
    )


def test_endpoint_list_filters_sorts_and_pages(platform, finished_run):  # type: ignore[no-untyped-def]
    run_id = finished_run["id"]
    status, body = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints?limit=1&group=B")
    assert status == 200 and body["total"] == 2 and [e["id"] for e in body["items"]] == ["B-1"]
    _, body = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints?sort=endpoint&order=desc")
    assert [e["id"] for e in body["items"]] == ["B-2", "B-1", "A-2", "A-1"]
    assert all(e["mos"] is None or e["mos"] > 4 for e in body["items"])
    status, html = platform.get_html(f"/runs/{run_id}/endpoints?outcome=SUCCESS&per_page=25")
    assert status == 200 and "4 endpoints match" in html and 'class="st-good"' in html


def test_endpoint_detail_has_the_sip_ladder_and_the_pair(platform, finished_run):  # type: ignore[no-untyped-def]
    run_id = finished_run["id"]
    # A caller's detail names its receiver as the pair: caller n -> receiver ((n-1) mod 2)+1.
    status, body = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/A-2")
    assert status == 200, body
    assert body["pairs"] == ["B-2"] and body["pair"]["endpoint"]["id"] == "B-2"
    assert any(t["label"].startswith("finished SUCCESS") for t in body["me"]["timeline"])
    assert len(body["me"]["series"]["recv"]) >= 2
    # The receiver's timeline carries the SIP messages, full text included.
    # (Receivers, because the worker attributes a Call-ID shared by two endpoints of
    # one host to the called one; see the report.)
    _, body = platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/B-2")
    sips = [t for t in body["me"]["timeline"] if t["kind"] == "sip"]
    invite = next(t for t in sips if t["label"].startswith("INVITE "))
    assert invite["direction"] in ("in", "out") and "Call-ID" in invite["text"]
    assert body["pairs"] == ["A-2"]
    status, html = platform.get_html(f"/runs/{run_id}/endpoints/B-2")
    assert status == 200 and 'id="ladder"' in html and "<details>" in html
    assert html.count('class="chart"') >= 5
    assert platform.request("GET", f"/api/v1/runs/{run_id}/endpoints/Z-9")[0] == 404


def test_compare_two_runs_and_page_through_lists(platform, finished_run):  # type: ignore[no-untyped-def]
    second = platform.run_test(SMOKE)
    platform.wait_status(second, {"COMPLETED", "FAILED"})
    first = finished_run["id"]
    status, body = platform.request("GET", f"/api/v1/compare?runs={first},{second}")
    assert status == 200 and [r["id"] for r in body["runs"]] == [first, second]
    assert body["runs"][0]["deltas"]["mos"] == 0
    status, html = platform.get_html(f"/compare?runs={first}&runs={second}")
    assert status == 200 and 'id="compare"' in html and 'class="chart"' in html
    status, body = platform.request("GET", "/api/v1/compare?runs=" + first)
    assert status == 422 and body["error"]["field"] == "runs"
    _, runs = platform.request("GET", "/api/v1/runs?limit=1&offset=1")
    assert runs["limit"] == 1 and runs["offset"] == 1 and len(runs["items"]) == 1
    assert runs["total"] >= 2
    status, body = platform.request("GET", "/api/v1/runs?limit=0")
    assert status == 422 and body["error"]["field"] == "limit"


async def test_api_keys_guard_the_api_and_the_pages(nats_server, postgres_server):  # type: ignore[no-untyped-def]
    settings = ApiSettings(
        nats_url=nats_server.url, database_url=postgres_server.url, api_keys="k1,k2"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/api/v1/tests")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
            r = await client.get("/api/v1/tests", headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401
            r = await client.get("/api/v1/tests", headers={"Authorization": "Bearer k2"})
            assert r.status_code == 200 and "items" in r.json()
            # Pages too: a browser is sent to log in; a key works there as well.
            r = await client.get("/workers", headers={"Accept": "text/html"})
            assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fworkers"
            r = await client.get("/workers", headers={"Authorization": "Bearer k1"})
            assert r.status_code == 200
            # /openapi.json declares the scheme, required on every /api/v1 operation.
            doc = (await client.get("/openapi.json")).json()
            assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
            assert doc["paths"]["/api/v1/tests"]["post"]["security"] == [{"bearerAuth": []}]
