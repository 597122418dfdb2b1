"""The UI in headless Chromium: create a test in the editor, run it, watch it live,
stop it, open an endpoint's SIP ladder. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CALLMETER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
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
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)

    # The user opens the editor (pre-filled with a two-group example) and shapes a test.
    page.goto(platform.base + "/tests/new")
    page.get_by_label("Name", exact=True).fill("browser smoke")
    page.get_by_label("Duration").fill("40")
    page.locator('[name="groups.0.endpoints"]').fill("2")
    page.locator('[name="groups.1.endpoints"]').fill("2")
    page.locator('[name="groups.0.codecs"]').fill("PCMA, PCMU")
    page.screenshot(path=ARTIFACTS / "01-editor.png", full_page=True)
    page.locator("#save").click()
    page.wait_for_url("**/tests/*")
    assert page.locator("h1").inner_text() == "browser smoke"

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
    assert page.locator("#percentiles tr[data-metric=mos]").count() == 1
    assert page.locator("#sip-codes").is_visible()
    assert page.locator("#result-charts svg.chart").count() == 5
    page.locator("#results").screenshot(path=ARTIFACTS / "05-run-results.png")
    page.close()
