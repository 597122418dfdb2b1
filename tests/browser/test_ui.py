"""The UI in headless Chromium: create a test in the editor, run it, watch it live,
stop it, open an endpoint's SIP ladder. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.login import open_page

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CALLMETER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        # Debian's browser, never a downloaded one.
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_create_run_watch_stop_and_read_the_ladder(platform, browser):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    # The user opens the editor (pre-filled with a two-group example) and shapes a test.
    page = open_page(browser, platform.base, "/tests/new")
    page.get_by_label("Name", exact=True).fill("browser smoke")
    page.get_by_label("Duration").fill("40")
    page.locator('[name="groups.0.endpoints"]').fill("2")
    page.locator('[name="groups.1.endpoints"]').fill("2")
    page.locator('[name="groups.0.codecs"]').fill("PCMA, PCMU")
    page.screenshot(path=ARTIFACTS / "01-editor.png", full_page=True)
    page.locator("#save").click()
    # "**/tests/*" matches /tests/new too: wait for the saved test's page itself.
    expect(page.locator("h1")).to_have_text("browser smoke")

    # Run it: the run page opens and follows the run over one SSE stream.
    page.locator("#run").click()
    page.wait_for_url("**/runs/*")
    run_url = page.url
    assert page.locator("[sse-connect]").count() == 1

    # Phases change live, without reloading: endpoints reach INCALL.
    page.wait_for_function(
        "() => Number(document.querySelector('[data-phase=INCALL] .v')?.textContent) > 0",
        timeout=60_000,
    )
    assert page.url == run_url
    assert page.locator("#run-status").inner_text() == "RUNNING"
    assert page.locator("svg.topology").is_visible()
    page.screenshot(path=ARTIFACTS / "02-run-live.png", full_page=True)

    # Stop it; the page shows COMPLETED when the platform is done (still no reload).
    page.locator("#stop").click()
    page.wait_for_url(run_url)
    page.wait_for_function(
        "() => document.querySelector('#run-status')?.textContent === 'COMPLETED'",
        timeout=60_000,
    )
    assert page.locator("#rerun").is_visible()
    page.screenshot(path=ARTIFACTS / "03-run-completed.png", full_page=True)

    # Open a called endpoint and read its SIP ladder, full text of the INVITE included.
    page.get_by_role("link", name="B-1", exact=True).first.click()
    page.wait_for_url("**/endpoints/B-1")
    ladder = page.locator("#ladder")
    assert ladder.is_visible()
    invite = ladder.locator("summary", has_text="INVITE").first
    invite.click()
    assert "Call-ID" in ladder.locator("details[open] pre").first.inner_text()
    assert "A-1" in page.locator("section[aria-label='paired endpoint'] h2").inner_text()
    page.screenshot(path=ARTIFACTS / "04-endpoint.png", full_page=True)

    # Back on the finished run's page: the results (percentiles, distributions, charts).
    page.goto(run_url)
    assert page.locator("#results").is_visible()
    # MOS: the worse direction's row, then send (caller -> callee) and recv.
    sides = page.locator("#percentiles tr[data-metric=mos]")
    assert [sides.nth(i).get_attribute("data-side") for i in range(3)] == ["worst", "send", "recv"]
    assert page.locator("#sip-codes").is_visible()
    # Four series charts, then a MOS histogram per direction (send, recv).
    assert page.locator("#result-charts svg.chart").count() == 6
    page.locator("#results").screenshot(path=ARTIFACTS / "05-run-results.png")
    page.close()


def test_the_editor_saves_call_options_a_scenario_and_thresholds(platform, browser):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page = open_page(browser, platform.base, "/tests/new")
    page.get_by_label("Name", exact=True).fill("browser options")
    callers, receivers = (
        page.locator('fieldset[data-group="0"]'),
        page.locator('fieldset[data-group="1"]'),
    )

    # Call options, in each group's folded "Call options" section.
    callers.locator("details.call-options > summary").click()
    callers.get_by_label("PRACK (100rel)").select_option("supported")
    callers.get_by_label("Session timer").select_option("optional")
    callers.get_by_label("Session-Expires").fill("300")
    callers.get_by_label("INVITE timeout").fill("20")
    receivers.locator("details.call-options > summary").click()
    receivers.get_by_label("Answer delay").fill("0.2")
    receivers.get_by_label("Ring time").fill("0.5")

    # Scenario rows come and go through plain form posts (no JS): add two, remove the first.
    callers.locator("details.scenario > summary").click()
    for rows in (1, 2):
        with page.expect_navigation():
            page.locator("#add-action-0").click()
        expect(callers.locator("tr[data-action]")).to_have_count(rows)
    callers.get_by_label("action 2", exact=True).select_option("dtmf")
    callers.get_by_label("action 2 at seconds").fill("1")
    with page.expect_navigation():
        callers.locator("tr[data-action='0']").get_by_role("button", name="Remove").click()
    expect(callers.locator("tr[data-action]")).to_have_count(1)
    expect(callers.get_by_label("action 1", exact=True)).to_have_value("dtmf")
    # The re-rendered editor kept the options typed before the posts.
    expect(receivers.get_by_label("Ring time")).to_have_value("0.5")

    page.get_by_label("Thresholds").fill("mos_avg >= 4.0\nmos_avrage > 3")
    page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hook")
    page.screenshot(path=ARTIFACTS / "06-editor-options.png", full_page=True)

    # Saving with the DTMF digits empty and a misspelt metric: 422, each message beside
    # its field (nested path groups.0.scenario.0.digits), nothing saved.
    with page.expect_navigation():
        page.locator("#save").click()
    digits = callers.get_by_label("action 1 digits")
    expect(digits).to_have_attribute("aria-invalid", "true")
    expect(digits).to_have_attribute("aria-describedby", "f-groups-0-scenario-0-digits-error")
    beside = page.locator("td:has(#f-groups-0-scenario-0-digits) > p.field-error")
    # Beside its input a message needs no path; the summary at the top keeps it.
    expect(beside).to_have_text("a dtmf action needs digits")
    threshold_error = page.locator("#f-thresholds + p.field-error")
    expect(threshold_error).to_have_text(
        re.compile(r"^line 2: unknown threshold metric 'mos_avrage'; known: mos_avg")
    )
    summary_link = page.locator("#form-errors a[href='#f-groups-0-scenario-0-digits']")
    expect(summary_link).to_have_text("groups.0.scenario.0.digits: a dtmf action needs digits")
    page.screenshot(path=ARTIFACTS / "07-editor-inline-errors.png", full_page=True)

    # Fixed, it saves and opens the test.
    digits.fill("12#")
    page.get_by_label("Thresholds").fill("mos_avg >= 4.0\ncall_success_rate >= 99")
    with page.expect_navigation():
        page.locator("#save").click()
    assert re.search(r"/tests/[^/]+$", page.url), page.url
    expect(page.locator("h1")).to_have_text("browser options")

    # The JSON API returns what the editor saved.
    status, test = platform.request("GET", "/api/v1/tests/" + page.url.rsplit("/", 1)[1])
    assert status == 200, test
    d = test["definition"]
    a_opts, b_opts = d["groups"][0]["options"], d["groups"][1]["options"]
    assert (a_opts["prack"], a_opts["session_timer"]) == ("supported", "optional")
    assert (a_opts["session_expires_s"], a_opts["invite_timeout_s"]) == (300, 20)
    assert (b_opts["answer_delay_s"], b_opts["ring_time_s"]) == (0.2, 0.5)
    assert d["groups"][0]["scenario"] == [
        {"at_s": 1.0, "action": "dtmf", "digits": "12#", "method": "rfc4733", "codec": None}
    ]
    assert d["groups"][1]["scenario"] == []
    assert d["thresholds"] == ["mos_avg >= 4.0", "call_success_rate >= 99"]
    assert [w["url"] for w in d["webhooks"]] == ["http://127.0.0.1:9/hook"]
    page.close()


def test_the_editor_saves_a_call_pattern_and_a_capacity_search(platform, browser):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page = open_page(browser, platform.base, "/tests/new")
    page.get_by_label("Name", exact=True).fill("browser pattern")
    page.get_by_label("Duration").fill("30")
    callers = page.locator('fieldset[data-group="0"]')

    # The callers make calls per second: a rate with exponential holds and a call cap.
    callers.locator("details.call-pattern > summary").click()
    callers.get_by_label("Pattern", exact=True).select_option("rate")
    pattern = {
        "cps": "1",
        "hold_s": "-2",  # a bad value: a hold must be positive
        "max_calls": "12",
    }
    for key, value in pattern.items():
        callers.locator(f'[name="groups.0.pattern.{key}"]').fill(value)
    callers.locator('[name="groups.0.pattern.hold"]').select_option("exponential")

    # And the test is a capacity search: one more caller every 5 s, settling longer than
    # a step (a bad value too).
    page.locator("#capacity > details > summary").click()
    search = {"endpoints_per_step": "1", "step_s": "5", "settle_s": "6", "target_calls": "3"}
    for key, value in search.items():
        page.locator(f'[name="capacity.{key}"]').fill(value)
    page.locator('[name="capacity.stop_when"]').fill("mos_avg >= 4\ncall_success_rate >= 99")

    # Saved: 422, each error beside its field (no JS: the server renders them).
    with page.expect_navigation():
        page.locator("#save").click()
    hold = page.locator("#f-groups-0-pattern-hold_s")
    expect(hold).to_have_attribute("aria-invalid", "true")
    expect(hold).to_have_attribute("aria-describedby", "f-groups-0-pattern-hold_s-error")
    expect(page.locator("#f-groups-0-pattern-hold_s-error")).to_have_text(
        "Input should be greater than 0"
    )
    settle = page.locator("#f-capacity-settle_s")
    expect(settle).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-capacity-settle_s-error")).to_have_text("must be shorter than step_s")
    # The re-rendered editor kept what was typed, its sections open.
    expect(callers.get_by_label("Pattern", exact=True)).to_have_value("rate")
    expect(page.locator('[name="capacity.target_calls"]')).to_have_value("3")
    page.screenshot(path=ARTIFACTS / "08-editor-pattern-errors.png", full_page=True)

    # Fixed, it saves; the JSON API returns the pattern and the search.
    hold.fill("2")
    settle.fill("1")
    with page.expect_navigation():
        page.locator("#save").click()
    expect(page.locator("h1")).to_have_text("browser pattern")
    test_id = page.url.rsplit("/", 1)[1]
    status, test = platform.request("GET", "/api/v1/tests/" + test_id)
    assert status == 200, test
    d = test["definition"]
    assert d["groups"][0]["pattern"] == {
        "kind": "rate",
        "cps": 1.0,
        "cps_end": None,
        "ramp_s": 0.0,
        "steps": [],
        "hold": "exponential",
        "hold_s": 2.0,
        "max_calls": 12,
        "seed": 0,
    }
    assert d["groups"][1]["pattern"] == {"kind": "single"}
    assert d["capacity"] == {
        "endpoints_per_step": 1,
        "cps_per_step": None,
        "step_s": 5.0,
        "settle_s": 1.0,
        "stop_when": ["mos_avg >= 4", "call_success_rate >= 99"],
        "target_calls": 3,
        "target_cps": None,
    }

    # Editing shows them again; saving unchanged keeps them.
    page.goto(f"{platform.base}/tests/{test_id}/edit")
    expect(callers.get_by_label("Pattern", exact=True)).to_have_value("rate")
    expect(page.locator('[name="groups.0.pattern.hold"]')).to_have_value("exponential")
    expect(page.locator('[name="capacity.stop_when"]')).to_have_value(
        "mos_avg >= 4\ncall_success_rate >= 99"
    )
    with page.expect_navigation():
        page.locator("#save").click()
    status, again = platform.request("GET", "/api/v1/tests/" + test_id)
    assert status == 200 and again["definition"] == d, again
    page.close()


def _pattern_run(platform) -> str:  # type: ignore[no-untyped-def]
    """A short run with call patterns (direct calls, no registrar): A makes 4 calls at
    2 calls/s over 2 endpoints, C one endpoint's 2 repeated calls; all are answered."""
    definition = {
        "name": "browser calls",
        "duration_s": 5,
        "groups": [
            {
                "name": "A",
                "endpoints": 2,
                "calls": "B",
                "pattern": {"kind": "rate", "cps": 2, "hold_s": 0.5, "max_calls": 4},
            },
            {"name": "B", "endpoints": 2},
            {
                "name": "C",
                "endpoints": 1,
                "calls": "D",
                "pattern": {"kind": "repeat", "hold_s": 0.5, "pause_s": 0.3, "calls": 2},
            },
            {"name": "D", "endpoints": 1},
        ],
    }
    run_id = platform.run_test(definition)
    platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    deadline = time.monotonic() + 30  # records are stored by metrics-ingest
    while time.monotonic() < deadline:
        _, page = platform.request("GET", f"/api/v1/runs/{run_id}/calls?limit=1")
        if page["total"] >= 6:
            break
        time.sleep(0.3)
    return run_id


def test_the_calls_page_summarises_charts_filters_and_exports_a_patterned_run(platform, browser):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    run_id = _pattern_run(platform)
    status, summary = platform.request("GET", f"/api/v1/runs/{run_id}/calls/summary")
    assert status == 200 and summary["attempts"] == 6, summary
    # The run page links to its calls.
    page = open_page(browser, platform.base, f"/runs/{run_id}")
    page.locator(f"a[href='/runs/{run_id}/calls']").first.click()
    page.wait_for_url(f"**/runs/{run_id}/calls")

    # Summary cards: what the JSON summary says (6 attempts, every one answered).
    cards = page.locator("#call-summary .card")
    expect(cards).to_have_count(4)
    figures = [cards.nth(i).locator(".v").inner_text() for i in range(4)]
    assert figures[:3] == [str(summary[k]) for k in ("attempts", "answered", "failed")]
    assert figures == ["6", "6", "0", "100.0 %"], figures
    # Two charts, each drawn (calls per second and concurrent calls), not "no samples".
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(2)
    for name in ("Calls per second (calls/s)", "Concurrent calls"):
        chart = page.locator(f"svg.chart[aria-label='{name}']")
        assert chart.locator("polyline, circle").count() >= 1, name
        expect(chart).not_to_contain_text("no samples yet")
    assert page.locator("#calls tbody tr").count() == 6
    page.screenshot(path=ARTIFACTS / "09-calls.png", full_page=True)

    # Filter by group: the repeat group's two calls, in order, C-1 only.
    page.get_by_label("Group").select_option("C")
    with page.expect_navigation():
        page.get_by_role("button", name="Apply").click()
    assert "group=C" in page.url, page.url
    rows = page.locator("#calls tbody tr")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(2)] == ["C-1", "C-1"]
    assert sorted(rows.nth(i).locator("td").nth(2).inner_text() for i in range(2)) == ["1", "2"]
    expect(page.locator("main, body").first).to_contain_text("2 calls match")

    # The export links carry the filter: CSV and Parquet of the same two calls.
    csv_href = page.get_by_role("link", name="CSV").get_attribute("href")
    parquet_href = page.get_by_role("link", name="Parquet").get_attribute("href")
    assert csv_href and "group=C" in csv_href and "format=csv" in csv_href, csv_href
    got = page.request.get(platform.base + csv_href)
    assert got.ok, got.status
    table = list(csv.DictReader(io.StringIO(got.text())))
    assert [(r["group_name"], r["endpoint_id"]) for r in table] == [("C", "C-1")] * 2, table
    assert parquet_href and "group=C" in parquet_href, parquet_href
    got = page.request.get(platform.base + parquet_href)
    assert got.ok and got.body()[:4] == b"PAR1", got.status
    frame = pq.read_table(io.BytesIO(got.body())).to_pylist()
    assert sorted(r["seq"] for r in frame) == [1, 2] and {r["group_name"] for r in frame} == {"C"}
    page.close()


def test_forms_carry_the_session_csrf_token_and_nothing_changes_without_it(platform, browser):  # type: ignore[no-untyped-def]
    """Every form of a logged-in page carries the session's token; the same form
    without it is refused with 403, and a page of another site posting to CallMeter
    gets nowhere (SameSite=Lax keeps the session cookie home, and it has no token)."""
    from playwright.sync_api import expect

    status, test = platform.request(
        "POST",
        "/api/v1/tests",
        {"name": "csrf", "duration_s": 30, "groups": [{"name": "A", "endpoints": 1}]},
    )
    assert status == 201, test
    runs = f"/api/v1/runs?test_id={test['id']}"
    page = open_page(browser, platform.base, f"/tests/{test['id']}")
    forms = page.locator("form[method=post]")
    tokens = {
        forms.nth(i).locator("input[name=csrf_token]").input_value() for i in range(forms.count())
    }
    assert len(tokens) == 1 and all(tokens), tokens  # one per session, in every form
    # The Run form without its token: 403 and no run.
    page.locator("#run").evaluate("b => b.form.querySelector('[name=csrf_token]').remove()")
    page.locator("#run").click()
    expect(page.locator("main")).to_contain_text("CSRF token")
    assert platform.request("GET", runs)[1]["total"] == 0
    # Another site (localhost is not 127.0.0.1) with a form posting to CallMeter.
    other = platform.base.replace("127.0.0.1", "localhost")
    page.goto(other + "/login")
    page.set_content(
        f'<form method="post" action="{platform.base}/tests/{test["id"]}/run">'
        '<button id="evil">Win a prize</button></form>'
    )
    page.locator("#evil").click()
    page.wait_for_load_state()
    assert "/login" in page.url, page.url  # no session came along
    assert platform.request("GET", runs)[1]["total"] == 0
    # The page as served: it runs, and its Stop button (a form too) stops the run.
    page.goto(f"{platform.base}/tests/{test['id']}")
    page.locator("#run").click()
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f]+$"))
    page.locator("#stop").click()
    expect(page.locator(".status")).to_have_text(re.compile("STOPPING|COMPLETED"), timeout=60_000)
    assert platform.request("GET", runs)[1]["total"] == 1
    # Logging out ends the session: its cookie no longer opens a page.
    page.locator("#logout").click()
    page.wait_for_url(re.compile(r".*/login$"))
    page.goto(platform.base + "/runs")
    assert "/login" in page.url


def test_the_run_page_charts_mos_lqo_beside_the_e_model_mos(platform, browser):  # type: ignore[no-untyped-def]
    """A run whose caller plays the shipped speech reference: the finished run's page
    draws each scored call's PESQ MOS-LQO bar beside its E-model MOS bar, with the
    values the API reports."""
    from playwright.sync_api import expect

    run_id = platform.run_test(
        {
            "name": "browser speech",
            "duration_s": 6,
            "speech_quality_calls": 1,
            "groups": [
                {"name": "A", "endpoints": 1, "calls": "B", "audio": "speech-en"},
                {"name": "B", "endpoints": 1},
            ],
        }
    )
    run = platform.wait_status(run_id, {"COMPLETED", "FAILED"}, timeout=90)
    assert run["status"] == "COMPLETED", run
    _, sq = platform.request("GET", f"/api/v1/runs/{run_id}/speech_quality")
    [b1] = sq["endpoints"]
    assert b1["mos_lqo"] is not None and b1["mos_emodel"] is not None, b1

    page = open_page(browser, platform.base, f"/runs/{run_id}")
    chart = page.locator("#speech-chart svg.chart")
    expect(chart).to_be_visible()
    assert chart.get_attribute("aria-label") == "Speech quality per sampled call (MOS)"
    # One row, B-1, with both bars: PESQ first, the E-model's beside it.
    bars = chart.locator("rect:has(title)")
    expect(bars).to_have_count(2)
    titles = [bars.nth(i).locator("title").text_content() for i in range(2)]
    assert titles == [
        f"PESQ MOS-LQO: {b1['mos_lqo']:.2f}",
        f"E-model MOS (avg): {b1['mos_emodel']:.2f}",
    ]
    assert all(bars.nth(i).bounding_box()["width"] > 0 for i in range(2))  # type: ignore[index]
    expect(chart.locator("text", has_text="B-1")).to_have_count(1)
    row = page.locator("#speech-quality tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(3)).to_have_text(f"{b1['mos_lqo']:.2f}")
    page.locator("#speech-chart").screenshot(path=ARTIFACTS / "08-speech-quality.png")
    page.close()
