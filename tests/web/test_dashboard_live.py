"""The dashboard in a real Chromium against a real daemon: a `git push` shows on the open page."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium.webdriver.common.by import By

from tests.conftest import git
from tests.daemon.kit import Daemons, Server, shell_env, state_is, wait_for
from tests.web import pages
from tests.web.browser import screenshot, wait_until
from tests.web.serve import serve
from tests.web.statebranch import commit_state, state_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def with_labels(text: str, labels: dict[str, str]) -> str:
    inline = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return re.sub(r"(?m)^(  name: .*)$", rf"\1\n  labels: {{{inline}}}", text, count=1)


def test_a_pushed_change_goes_through_its_phases_on_the_open_page_without_a_reload(
    page: Any, server: Server, daemons: Daemons, tmp_path: Path, screenshots: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare)
    # destroy sleeps, so that `destroying` lasts long enough to be seen on the page
    server.write("environments/web.yaml", shell_env("web", log, slow="destroy", pause=4))
    server.write("environments/api.yaml", shell_env("api", log))
    server.push("add web and api")
    wait_for("web running", state_is(server.bare, "web", "running"), 30)
    wait_for("api running", state_is(server.bare, "api", "running"), 30)

    page.get(daemon.url("/"))
    wait_until(
        page,
        "both rows running",
        lambda d: (
            pages.cell(d, "web", "observed") == "running" and pages.cell(d, "api", "observed") == "running"
        ),
    )
    assert pages.rows(page) == ["api", "web"]
    assert pages.count(page, "running") == 2
    assert pages.cell(page, "web", "converged") == "yes"
    screenshot(page, screenshots, "fleet-running")
    pages.keep_watch(page, "web")

    server.write("environments/web.yaml", shell_env("web", log, desired="destroyed", slow="destroy", pause=4))
    server.push("destroy web")
    wait_until(
        page, "web destroyed on the page", lambda d: pages.cell(d, "web", "observed") == "destroyed", 40
    )

    assert "destroying" in pages.seen(page), pages.seen(page)
    assert pages.same_document(page), "the page was reloaded"
    assert pages.count(page, "running") == 1
    assert pages.count(page, "destroyed") == 1
    assert pages.cell(page, "api", "observed") == "running"
    assert "destroying → destroyed" in pages.cell(page, "web", "last")
    screenshot(page, screenshots, "fleet-destroyed")
    assert pages.foreign_requests(page, daemon.url("")) == []
    assert pages.script_errors(page) == []

    assert page.find_element(By.ID, "live").text == "live"
    daemon.stop()
    wait_until(
        page, "the page to say it lost the server", lambda d: d.find_element(By.ID, "live").text != "live"
    )
    assert page.find_element(By.ID, "live").text == "reconnecting…"


def test_the_environment_page_shows_phases_history_and_new_transitions_as_they_happen(
    page: Any, server: Server, daemons: Daemons, tmp_path: Path, screenshots: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare)
    server.write("environments/web.yaml", shell_env("web", log))
    server.push("add web")
    first = git(server.clone, "rev-parse", "HEAD").strip()
    wait_for("web running", state_is(server.bare, "web", "running"), 30)

    page.get(daemon.url("/environments/web"))
    wait_until(page, "the phases", pages.phases)
    phases = pages.phases(page)
    assert set(phases) == {"provision", "configure", "release", "run"}
    for hash_text, completed in phases.values():
        assert re.fullmatch(r"[0-9a-f]{12}", hash_text), hash_text  # the recorded hash
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", completed), completed
    summary = page.find_element(By.ID, "summary").text
    assert "running" in summary
    assert first[:12] in summary
    history = page.find_element(By.ID, "history")
    assert "provisioning" in history.text
    assert "starting → running" in history.text
    assert first[:12] in history.text  # each transition names the desired commit it applied
    assert "Test User" in history.text  # and who made it
    before = len(history.find_elements(By.CSS_SELECTOR, "li"))
    screenshot(page, screenshots, "environment-web")
    page.execute_script("window.__sameDocument = true")

    server.write("environments/web.yaml", shell_env("web", log, release="v2"))
    server.push("release v2")
    second = git(server.clone, "rev-parse", "HEAD").strip()
    wait_until(
        page,
        "the re-release in the timeline",
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#history li")) >= before + 4
            and second[:12] in d.find_element(By.ID, "summary").text
        ),
        40,
    )
    assert pages.same_document(page)
    assert pages.foreign_requests(page, daemon.url("")) == []
    assert pages.script_errors(page) == []
    newest = page.execute_script("return document.querySelector('#history li').textContent")
    assert "running" in newest
    assert second[:12] in newest


def test_filters_and_pages_are_kept_in_the_url(
    page: Any, server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare)
    server.write("environments/web.yaml", with_labels(shell_env("web", log), {"team": "shop"}))
    server.write("environments/api.yaml", with_labels(shell_env("api", log), {"team": "shop"}))
    server.write(
        "environments/db.yaml", with_labels(shell_env("db", log, desired="provisioned"), {"team": "data"})
    )
    server.push("three environments")
    for name, state in (("web", "running"), ("api", "running"), ("db", "provisioned")):
        wait_for(f"{name} {state}", state_is(server.bare, name, state), 30)

    page.get(daemon.url("/?selector=team%3Dshop"))
    wait_until(page, "the shop's rows", lambda d: pages.rows(d) == ["api", "web"])
    assert page.find_element(By.NAME, "selector").get_attribute("value") == "team=shop"

    page.get(daemon.url("/"))
    wait_until(page, "every row", lambda d: pages.rows(d) == ["api", "db", "web"])
    assert pages.count(page, "provisioned") == 1
    page.find_element(By.CSS_SELECTOR, '#counts a:has([data-count="provisioned"])').click()
    wait_until(page, "only db", lambda d: pages.rows(d) == ["db"])
    assert "state=provisioned" in page.current_url

    page.get(daemon.url("/"))
    wait_until(page, "every row", lambda d: len(pages.rows(d)) == 3)
    name = page.find_element(By.NAME, "name")
    name.send_keys("we")
    page.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_until(page, "only web", lambda d: pages.rows(d) == ["web"])
    assert "name=we" in page.current_url

    page.get(daemon.url("/?limit=2"))
    wait_until(page, "the first page", lambda d: pages.rows(d) == ["api", "db"])
    assert "1–2 of 3" in page.find_element(By.ID, "pager").text
    page.find_element(By.XPATH, "//nav[@id='pager']/button[contains(., 'next')]").click()
    wait_until(page, "the second page", lambda d: pages.rows(d) == ["web"])
    assert "offset=2" in page.current_url
    page.back()
    wait_until(page, "the first page again", lambda d: pages.rows(d) == ["api", "db"])

    page.find_element(By.NAME, "selector").send_keys("team")  # no '=': the API's refusal, as it says it
    page.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_until(page, "the refusal", lambda d: d.find_element(By.ID, "problem").is_displayed())
    assert pages.rows(page) == []  # no stale rows beside the refusal
    problem = page.find_element(By.ID, "problem").text
    assert "selector" in problem and "key=value" in problem, problem


def test_a_long_history_shows_its_newest_events_and_older_ones_on_demand(
    page: Any, server: Server, tmp_path: Path
) -> None:
    server.write(
        "environments/web.yaml",
        "apiVersion: reconciler/v1\nkind: Environment\n"
        "metadata: {name: web}\nspec: {desiredState: running}\n",
    )
    server.push("add web")
    desired = git(server.clone, "rev-parse", "HEAD").strip()
    states = ["released", "starting", "running", "releasing"] * 20  # 80 transitions
    for before, after in itertools.pairwise(["configured", *states]):
        commit_state(server.bare, state_json("web", after, desired), before)

    with serve(server.bare, tmp_path / "data", tmp_path / "serve.log") as served:
        page.get(served.url("/environments/web"))
        wait_until(page, "the history", lambda d: d.find_elements(By.CSS_SELECTOR, "#history li"))
        assert len(page.find_elements(By.CSS_SELECTOR, "#history li")) == 50
        assert "running → releasing" in page.execute_script(
            "return document.querySelector('#history li').textContent"
        )
        page.find_element(By.CSS_SELECTOR, "#history button.older").click()
        wait_until(page, "every event", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 80)
        assert page.find_elements(By.CSS_SELECTOR, "#history button.older") == []
