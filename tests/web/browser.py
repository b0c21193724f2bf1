"""The system's Chromium driven by Selenium: nothing downloaded, nothing shared with the user's profile.

The driver and the browser are named explicitly (``chromedriver`` and ``chromium`` on PATH) so that
Selenium Manager never looks for, or fetches, a build of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def absent_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if shutil.which("chromedriver") is None:
        return "chromedriver is not on PATH (Debian: apt-get install chromium-driver)"
    if browser_binary() is None:
        return "chromium is not on PATH (Debian: apt-get install chromium)"
    return None


def browser_binary() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A headless Chromium with a throw-away profile, quit (and its profile removed) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should it ever run, must not download
    profile = tempfile.mkdtemp(prefix="reconcile-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser_binary())
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver: Any, what: str, predicate: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    """Poll ``predicate(driver)`` until it is truthy; fail naming ``what`` and the page's text."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate(driver)
            if value:
                return value
        except Exception as e:  # the element may be replaced by a refresh between two polls
            last_error = e
        if time.monotonic() > deadline:
            body = driver.execute_script("return document.body ? document.body.innerText : ''")
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_error!r});"
                f" page:\n{body[:3000]}"
            )
        time.sleep(0.05)


def screenshot(driver: Any, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
