"""Probes from the browser: a probe saved from the Probes page goes Healthy on its own
page (no reload: the page refreshes itself), with its history charts; the project's
public status page, published from the same page, shows it to a visitor who is not
logged in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.test_ui import ARTIFACTS, browser  # noqa: F401  (the fixture)
from tests.support.login import claimed_platform, open_page
from tests.support.platform import TestPlatform

pytestmark = pytest.mark.integration
ONE_CALL = {
    "name": "one direct call",
    "duration_s": 2,
    "groups": [
        {"name": "A", "endpoints": 1, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 1, "codecs": ["PCMU"]},
    ],
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPlatform]:
    """The browser tests' claimed platform, accepting probe intervals down to 5 s
    (CALLMETER_PROBE_MIN_INTERVAL_S: a test-only setting)."""
    with claimed_platform(
        tmp_path_factory.mktemp("platform"), {"CALLMETER_PROBE_MIN_INTERVAL_S": "5"}
    ) as p:
        yield p


def test_a_probe_page_goes_healthy_and_the_status_page_shows_it(platform, browser):  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    status, test = platform.request("POST", "/api/v1/tests", ONE_CALL)
    assert status == 201, test
    page = open_page(browser, platform.base, "/probes")
    expect(page.locator(".empty")).to_have_text("No probe yet.")
    # A probe of the saved test, from the form.
    page.get_by_label("Name").fill("browser probe")
    page.locator("#f-test_id").select_option(test["id"])
    page.get_by_label("Interval").fill("3")
    page.get_by_role("button", name="Save probe").click()
    # Too short: the form comes back with the field's error.
    expect(page.locator("#f-interval_s-error")).to_contain_text("at least 5 s")
    page.get_by_label("Interval").fill("8")
    page.get_by_role("button", name="Save probe").click()
    page.wait_for_url("**/probes/probe_*")
    expect(page.locator("h1")).to_contain_text("browser probe")
    # Its first execution is judged and the page shows it without a reload.
    expect(page.locator("#probe-health")).to_have_text("HEALTHY", timeout=60_000)
    expect(page.locator("#probe-charts svg.chart")).to_have_count(3)
    # (the newest row may be the next execution, still running)
    expect(page.locator("#probe-history tbody tr", has_text="HEALTHY").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "07-probe.png", full_page=True)
    # Paused, it starts no more executions; resumed, it goes on.
    page.locator("#pause-probe").click()
    expect(page.locator("#pause-probe")).to_have_text("Resume")
    _, paused = platform.request("GET", f"/api/v1/probes/{page.url.rsplit('/', 1)[1]}")
    assert paused["enabled"] is False
    page.locator("#pause-probe").click()
    expect(page.locator("#pause-probe")).to_have_text("Pause")
    # Edited on its page: a condition the language refuses comes back beside its box,
    # naming the line; a good one is saved with the new interval, the target kept.
    probe_id = page.url.rsplit("/", 1)[1]
    page.locator("#edit-probe summary").click()
    expect(page.get_by_label("Unhealthy unless")).to_have_value("call_success_rate >= 100")
    page.get_by_label("Interval").fill("9")
    page.get_by_label("Unhealthy unless").fill("call_success_rate >= 100\nmos_avg >>> 3")
    page.locator("#save-probe-edit").click()
    expect(page.locator("#f-unhealthy-error")).to_contain_text("line 2")
    expect(page.get_by_label("Interval")).to_have_value("9")  # what was typed is kept
    page.get_by_label("Unhealthy unless").fill("call_success_rate >= 100\nmos_avg >= 1")
    page.locator("#save-probe-edit").click()
    expect(page.locator("#probe-live")).to_contain_text("every 9 s")
    expect(page.locator("#probe-live")).to_contain_text("mos_avg >= 1")
    _, edited = platform.request("GET", f"/api/v1/probes/{probe_id}")
    assert edited["interval_s"] == 9 and edited["test_id"] == test["id"], edited
    assert edited["unhealthy"] == ["call_success_rate >= 100", "mos_avg >= 1"], edited
    assert edited["degraded"] == ["mos_avg >= 3.5", "post_dial_delay_p95_ms <= 3000"]
    # Its target changes to another saved test of the project, the rest kept.
    status, other = platform.request("POST", "/api/v1/tests", ONE_CALL | {"name": "other"})
    assert status == 201, other
    page.reload()
    page.locator("#edit-probe summary").click()
    page.locator("#f-test_id").select_option(other["id"])
    page.locator("#save-probe-edit").click()
    expect(page.locator("#probe-live")).to_contain_text(f"test {other['id']}")
    _, moved = platform.request("GET", f"/api/v1/probes/{probe_id}")
    assert (moved["test_id"], moved["interval_s"]) == (other["id"], 9), moved

    # Publish the project's status page; a visitor without a login sees the probe.
    page.goto(platform.base + "/probes")
    page.get_by_role("button", name="Publish a status page").click()
    link = page.locator("#status-pages a", has_text="public")
    expect(link).to_be_visible()
    status_url = platform.base + link.get_attribute("href")
    visitor = browser.new_context().new_page()
    visitor.goto(status_url)
    expect(visitor.locator("h1")).to_have_text("default status")
    probe = visitor.locator(".probe", has_text="browser probe")
    expect(probe.locator(".health")).to_have_text("Healthy")
    expect(probe.locator(".bars span.st-good").first).to_be_visible()
    assert "127.0.0.1" not in visitor.content() and test["id"] not in visitor.content()
    visitor.screenshot(path=ARTIFACTS / "08-status-page.png", full_page=True)

    visitor.close()

    # The project's webhooks: a bad URL is refused beside the field, a good one listed
    # with its secret kept write-only.
    page.get_by_label("URL").fill("ftp://hooks.example")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#f-url-error")).to_contain_text("should match pattern")
    page.get_by_label("URL").fill("https://hooks.example/callmeter")
    page.locator("#f-secret").fill("hook-secret")
    page.get_by_role("button", name="Add webhook").click()
    hook = page.locator("#project-webhooks li", has_text="https://hooks.example/callmeter")
    expect(hook).to_contain_text("signed with its own secret")
    assert "hook-secret" not in page.content()

    # A target of its own: one call to a SIP URI; a call too long for a probe comes back
    # beside its field (passwords are never shown again), a good one is saved inline.
    page.goto(platform.base + "/probes")
    page.get_by_label("Name").fill("own target")
    page.get_by_label("Target URI").fill("sip:echo@127.0.0.1:5099")
    page.get_by_label("SIP user").fill("probe1")
    page.get_by_label("Password").fill("pw-probe1")
    page.get_by_label("Call length").fill("500")
    page.get_by_role("button", name="Save probe").click()
    expect(page.locator("#f-call_s-error")).to_contain_text("at most")
    expect(page.get_by_label("Target URI")).to_have_value("sip:echo@127.0.0.1:5099")
    expect(page.get_by_label("Password")).to_have_value("")
    page.get_by_label("Password").fill("pw-probe1")
    page.get_by_label("Call length").fill("5")
    page.get_by_role("button", name="Save probe").click()
    page.wait_for_url("**/probes/probe_*")
    expect(page.locator("#probe-live")).to_contain_text("inline target")
    page.locator("#pause-probe").click()  # nothing answers there: no executions needed
    _, own = platform.request("GET", f"/api/v1/probes/{page.url.rsplit('/', 1)[1]}")
    group = own["definition"]["groups"][0]
    assert group["target_uri"] == "sip:echo@127.0.0.1:5099" and own["definition"]["duration_s"] == 5
    assert group["accounts"][0]["password_set"] is True and "pw-probe1" not in str(own)
    page.close()
