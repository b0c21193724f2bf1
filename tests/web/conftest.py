from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.kit import Daemons, Server, make_server
from tests.web.browser import absent_reason, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module; each test starts from a blank page and session."""
    reason = absent_reason()
    if reason is not None:
        pytest.skip(f"browser tests need Chromium and its driver: {reason}")
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    yield browser
    with contextlib.suppress(Exception):  # a page that never loaded has no storage to clear
        browser.execute_script("window.sessionStorage.clear()")
    browser.delete_all_cookies()
    browser.get("about:blank")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return make_server(tmp_path)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    return tmp_path / "screenshots"
