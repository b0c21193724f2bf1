"""Off loopback the API needs RECONCILE_API_TOKEN: the page asks for it once and then works, live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium.webdriver.common.by import By

from tests.conftest import git
from tests.daemon.kit import Server
from tests.web import pages
from tests.web.browser import screenshot, wait_until
from tests.web.serve import serve
from tests.web.statebranch import commit_state, state_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOKEN = "s3cret-token-for-the-browser-test"


def token_form_shown(driver: Any) -> bool:
    return bool(driver.find_element(By.ID, "token-form").is_displayed())


def send_token(driver: Any, token: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, "#token-form input[name=token]")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()


def test_off_loopback_the_page_asks_for_the_token_once_then_shows_the_fleet_live(
    page: Any, server: Server, tmp_path: Path, screenshots: Path
) -> None:
    server.write(
        "environments/web.yaml",
        "apiVersion: reconciler/v1\nkind: Environment\n"
        "metadata: {name: web}\nspec: {desiredState: running}\n",
    )
    server.push("add web")
    desired = git(server.clone, "rev-parse", "HEAD").strip()
    commit_state(server.bare, state_json("web", "provisioned", desired), "provisioning")

    # 0.0.0.0 is not a loopback address: every API call needs the token; the browser still comes
    # in through 127.0.0.1.
    with serve(
        server.bare,
        tmp_path / "data",
        tmp_path / "serve.log",
        listen="0.0.0.0:0",
        env={"RECONCILE_API_TOKEN": TOKEN},
    ) as served:
        page.get(served.url("/"))
        wait_until(page, "the token form", token_form_shown)
        assert pages.rows(page) == []
        screenshot(page, screenshots, "token-asked")

        send_token(page, "not-the-token")
        wait_until(page, "the refusal", lambda d: "refused" in d.find_element(By.ID, "token-problem").text)
        assert token_form_shown(page)

        send_token(page, TOKEN)
        wait_until(page, "the fleet", lambda d: pages.cell(d, "web", "observed") == "provisioned")
        assert not token_form_shown(page)
        wait_until(
            page, "the event stream, with the token", lambda d: d.find_element(By.ID, "live").text == "live"
        )
        page.execute_script("window.__sameDocument = true")

        commit_state(server.bare, state_json("web", "running", desired), "starting")
        wait_until(page, "the new state, live", lambda d: pages.cell(d, "web", "observed") == "running")
        assert pages.same_document(page)

        page.get(served.url("/environments/web"))  # asked once: the tab keeps it
        wait_until(page, "the environment", lambda d: "running" in d.find_element(By.ID, "summary").text)
        assert not token_form_shown(page)
