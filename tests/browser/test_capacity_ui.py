"""A capacity search from the browser: saved from the editor's JSON box, run, and its
answer, step table and chart appearing on the live run page as the search stops itself."""

from __future__ import annotations

import json

import pytest

from tests.browser.test_ui import ARTIFACTS, browser  # noqa: F401  (the fixture)
from tests.support.login import open_page

pytestmark = pytest.mark.integration

SEARCH = {
    "name": "browser capacity",
    "duration_s": 12,
    # A stop condition no G.711 call meets (MOS tops out near 4.4): the first step fails.
    "capacity": {
        "endpoints_per_step": 1,
        "step_s": 4,
        "settle_s": 1,
        "stop_when": ["mos_avg >= 4.9"],
    },
    "groups": [
        {"name": "A", "endpoints": 3, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 3, "codecs": ["PCMU"]},
    ],
}


def test_a_capacity_search_answers_on_the_live_run_page(platform, browser):  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, platform.base, "/tests/new")
    page.locator("details summary", has_text="Advanced: edit as JSON").click()
    page.locator("#definition").fill(json.dumps(SEARCH))
    page.get_by_role("button", name="Save JSON").click()
    expect(page.locator("h1")).to_have_text("browser capacity")

    page.locator("#run").click()
    page.wait_for_url("**/runs/*")
    run_url = page.url
    # The first step fails its condition: the answer and the step appear without a reload.
    answer = page.locator("#capacity-answer")
    expect(answer).to_contain_text("not even 1 concurrent calls met mos_avg >= 4.9", timeout=60_000)
    assert page.url == run_url
    step = page.locator("#capacity-steps tbody tr").first
    expect(step).to_contain_text("FAIL")
    assert page.locator("#capacity-chart svg.chart").count() == 2
    # The search stopped the run itself.
    page.wait_for_function(
        "() => document.querySelector('#run-status')?.textContent === 'COMPLETED'",
        timeout=60_000,
    )
    page.screenshot(path=ARTIFACTS / "06-capacity-search.png", full_page=True)
    page.close()
