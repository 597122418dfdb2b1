"""Test servers: the project's own NATS and PostgreSQL, on free ports, cleaned up.

CALLMETER_REQUIRE_ALL=1 (set by CI) turns every skip into a failure, so a
missing system package can never silently hide a test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from callmeter_common.servers import Server, start_nats, start_postgres

REQUIRE_ALL = os.environ.get("CALLMETER_REQUIRE_ALL") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "optional_external: needs a server the project cannot start itself (e.g. TimescaleDB);"
        " its skip stays a skip under CALLMETER_REQUIRE_ALL=1",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    exempt = item.get_closest_marker("optional_external") is not None
    if REQUIRE_ALL and report.skipped and call.when in ("setup", "call") and not exempt:
        report.outcome = "failed"
        report.longrepr = f"skipped, but CALLMETER_REQUIRE_ALL=1: {report.longrepr}"


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="callmeter-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server(session_dir: Path) -> Iterator[Server]:
    server = start_nats(session_dir / "nats-srv")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(session_dir: Path) -> Iterator[Server]:
    server = start_postgres(session_dir / "pg-srv")
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres_server: Server) -> str:
    return postgres_server.url


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, nats_server: Server, postgres_server: Server
):  # type: ignore[no-untyped-def]
    """Scheduler, dispatcher, one worker, metrics-ingest and the API, as real processes."""
    from tests.support.platform import TestPlatform

    p = TestPlatform(tmp_path_factory.mktemp("platform"), nats_server.url, postgres_server.url)
    p.start_services()
    try:
        p.wait_for_api()
        p.wait_workers(1)
        yield p
    finally:
        p.stop()
