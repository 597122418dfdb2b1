"""The browser tests run against a claimed platform of their own: an administrator
created with `callmeter users create`, logged in through the login page, so every
form and HTMX request the tests make carries the session's CSRF token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.login import ADMIN, PASSWORD

KEY = "browser-tests-key"  # for the tests' own API calls (platform.request)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.support.platform import TestPlatform

    p = TestPlatform(tmp_path_factory.mktemp("platform"), "", "")
    p.extra_env["CALLMETER_API_KEYS"] = KEY
    p.api_key = KEY
    try:
        p.start_servers()  # NATS and PostgreSQL of its own: its users claim nothing else
        env = {**os.environ, "CALLMETER_NATS_URL": p.nats_url, "CALLMETER_PASSWORD": PASSWORD}
        cli = str(Path(sys.executable).parent / "callmeter")
        subprocess.run([cli, "users", "create", ADMIN], env=env, check=True, timeout=180)
        p.start_services()
        p.wait_for_api()
        p.wait_workers(1)
        yield p
    finally:
        p.stop()
