"""The browser tests run against a claimed platform of their own: an administrator
created with `callmeter users create`, logged in through the login page, so every
form and HTMX request the tests make carries the session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.login import claimed_platform
from tests.support.platform import TestPlatform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPlatform]:
    with claimed_platform(tmp_path_factory.mktemp("platform")) as p:
        yield p
