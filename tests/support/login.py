"""A claimed platform for the browser tests, and logging a browser in to it through
the login page, as a person does it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.platform import TestPlatform

ADMIN, PASSWORD = "admin", "browser tests password"
KEY = "browser-tests-key"  # for the tests' own API calls (platform.request)


@contextlib.contextmanager
def claimed_platform(base: Path, extra_env: dict[str, str] | None = None) -> Iterator[TestPlatform]:
    """A platform with NATS and PostgreSQL of its own (its users claim nothing else),
    claimed by an administrator made with `callmeter users create`."""
    p = TestPlatform(base, "", "")
    p.extra_env |= {"CALLMETER_API_KEYS": KEY, **(extra_env or {})}
    p.api_key = KEY
    try:
        p.start_servers()
        env = {**os.environ, "CALLMETER_NATS_URL": p.nats_url, "CALLMETER_PASSWORD": PASSWORD}
        cli = str(Path(sys.executable).parent / "callmeter")
        subprocess.run([cli, "users", "create", ADMIN], env=env, check=True, timeout=180)
        p.start_services()
        p.wait_for_api()
        p.wait_workers(1)
        yield p
    finally:
        p.stop()


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


def open_page(browser, base: str, path: str):  # type: ignore[no-untyped-def]
    """A page of a logged-in context at `path` (its actions wait up to 30 s)."""
    page = log_in(browser, base).new_page()
    page.set_default_timeout(30_000)
    page.goto(base + path)
    return page
