"""Logging a browser in (tests/browser): the login page, as a person does it."""

from __future__ import annotations

ADMIN, PASSWORD = "admin", "browser tests password"


def log_in(browser, base: str):  # type: ignore[no-untyped-def]
    """A browser context logged in through the login page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(base + "/runs")
    assert "/login" in page.url  # a page needs a login; the login page comes back to it
    page.get_by_label("Username").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#login").click()
    page.wait_for_url(base + "/runs")
    page.close()
    return context
