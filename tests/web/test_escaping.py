"""Every user-written value reaches the page as text: planted markup is shown, never run.

The browser is told to ignore the page's Content-Security-Policy for these tests, so that
markup which did reach the DOM as HTML would run and be caught: CSP is the second line of
defence, and this tests the first (textContent and DOM properties, never innerHTML).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium.webdriver.common.by import By

from tests.conftest import git
from tests.daemon.kit import ROOT, Daemons, Server, state_of, wait_for
from tests.web import pages
from tests.web.browser import screenshot, wait_until
from tests.web.serve import serve
from tests.web.statebranch import NOW, commit_blob, commit_state, state_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PAYLOAD = (
    "<script>window.__pwned='script';document.title='pwned'</script>"
    "<img src=x onerror=\"window.__pwned='img';document.title='pwned'\">"
)
# A commit author cannot hold < or >: entities and quotes, which must not be decoded either.
AUTHOR = "Mallory &lt;b&gt; &amp; \"quoted\" 'single' Smith"


@pytest.fixture
def unguarded(page: Any) -> Iterator[Any]:
    """The page's CSP switched off in this browser, so that injected markup would run."""
    page.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})
    try:
        yield page
    finally:
        page.execute_cdp_cmd("Page.setBypassCSP", {"enabled": False})


def assert_nothing_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__pwned === undefined"), driver.execute_script(
        "return window.__pwned"
    )
    assert driver.title != "pwned"
    injected = driver.execute_script(
        "return [...document.querySelectorAll('img, script:not([src]), iframe, svg, object')]"
        ".map(e => e.outerHTML)"
    )
    assert injected == []


def assert_the_harness_would_notice(driver: Any) -> None:
    """The same payload set as HTML runs here: the assertions above can fail."""
    driver.execute_script(
        "const probe = document.createElement('div'); probe.innerHTML = arguments[0];"
        "document.body.appendChild(probe);",
        PAYLOAD,
    )
    wait_until(driver, "the probe's onerror to run", lambda d: d.execute_script("return window.__pwned"))


def failing_environment(name: str, step_name: str | None) -> str:
    """An environment whose labels and vars hold the payload and whose provision prints it and fails."""
    step: dict[str, Any] = {"shell": {"run": 'echo "output: $RECONCILE_VAR_NOTE"; exit 3'}}
    if step_name is not None:
        step["name"] = step_name
    return "\n".join(
        [
            "apiVersion: reconciler/v1",
            "kind: Environment",
            "metadata:",
            f"  name: {name}",
            f"  labels: {{note: {json.dumps(PAYLOAD)}, team: xss}}",
            "spec:",
            "  desiredState: running",
            f"  vars: {{note: {json.dumps(PAYLOAD)}}}",
            "  retry: {limit: 1, backoffSeconds: 1}",
            f"  phases: {{provision: [{json.dumps(step)}]}}",
            "",
        ]
    )


def test_labels_vars_step_names_authors_and_trace_output_from_a_daemon_are_shown_as_text(
    unguarded: Any,
    server: Server,
    daemons: Daemons,
    screenshots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", AUTHOR)
    daemon = daemons.start(server.bare)
    server.write("environments/marked.yaml", failing_environment("marked", PAYLOAD))
    server.write("environments/plain.yaml", failing_environment("plain", None))
    server.push(PAYLOAD)
    for name in ("marked", "plain"):
        wait_for(
            f"{name} provision_failed",
            lambda name=name: (state_of(server.bare, name) or {}).get("state") == "provision_failed",
            30,
        )

    page = unguarded
    page.get(daemon.url("/?selector=team%3Dxss"))
    wait_until(page, "both rows", lambda d: pages.rows(d) == ["marked", "plain"])
    assert PAYLOAD in pages.cell(page, "marked", "failure-cell")  # the step's name, as written
    assert AUTHOR in pages.cell(page, "marked", "last")
    assert_nothing_ran(page)
    screenshot(page, screenshots, "escaping-fleet")

    page.get(daemon.url("/environments/marked"))
    wait_until(page, "the failure", lambda d: d.find_element(By.ID, "failure").is_displayed())
    wait_until(page, "the trace", lambda d: "output: " + PAYLOAD in d.find_element(By.ID, "failure").text)
    text = page.find_element(By.TAG_NAME, "body").text
    assert text.count(PAYLOAD) >= 4, text  # label, step name, trace output, history detail
    assert "note=" + PAYLOAD in page.find_element(By.ID, "summary").text
    assert AUTHOR in page.find_element(By.ID, "history").text
    assert_nothing_ran(page)
    screenshot(page, screenshots, "escaping-environment")
    assert_the_harness_would_notice(page)


def planted_state(repo: Path, desired: str, data: Path) -> None:
    """A state branch, written as another tool could write it, with the payload in every free string."""
    trace = "20261205-080000-provision.log"
    (data / "planted" / "traces").mkdir(parents=True)
    (data / "planted" / "traces" / trace).write_text(f"trace of planted\noutput: {PAYLOAD}\n")
    lock = {"id": str(uuid.uuid4()), "holder": {"host": PAYLOAD, "pid": 1}, "acquiredAt": NOW,
            "expiresAt": "2026-12-05T09:00:00Z"}  # fmt: skip
    commit_state(repo, state_json("locked", "provisioning", desired, lock=lock), "created",
                 actor=PAYLOAD, holder=PAYLOAD, detail=PAYLOAD)  # fmt: skip
    failure = {
        "phase": "provision",
        "failedStep": PAYLOAD,
        "errorKind": "command_failed",
        "errorSummary": PAYLOAD,
        "attempt": 1,
        "executionStartedAt": NOW,
        "failedAt": NOW,
        "executionDurationSeconds": 1.5,
        "traceId": str(uuid.uuid4()),
        "traceFile": f"data/planted/traces/{trace}",
        "phaseHash": PAYLOAD,
    }
    planted = state_json("planted", "provision_failed", desired, outputs={PAYLOAD: PAYLOAD}, failure=failure)
    commit_state(repo, planted, "provisioning", actor=PAYLOAD, holder=PAYLOAD, detail=PAYLOAD)
    drift = {"status": "drifted", "phase": PAYLOAD, "step": PAYLOAD, "summary": PAYLOAD, "checkedAt": NOW,
             "since": NOW}  # fmt: skip
    commit_state(repo, state_json("drifting", "running", desired, drift=drift), "starting")
    commit_blob(repo, "broken", PAYLOAD.encode(), "broken: written by hand\n")  # not JSON at all


def test_every_free_string_of_a_planted_state_branch_is_shown_as_text(
    unguarded: Any, server: Server, tmp_path: Path, screenshots: Path
) -> None:
    for name in ("planted", "locked", "drifting", "broken"):
        server.write(
            f"environments/{name}.yaml",
            "apiVersion: reconciler/v1\nkind: Environment\n"
            f"metadata: {{name: {name}, labels: {{note: {json.dumps(PAYLOAD)}}}}}\n"
            "spec: {desiredState: running}\n",
        )
    server.push("two environments")
    desired = git(server.clone, "rev-parse", "HEAD").strip()
    data = tmp_path / "data"
    planted_state(server.bare, desired, data)
    subprocess.run(
        [sys.executable, "-m", "reconciler", "suspend", "planted", "--reason", PAYLOAD,
         "--repo", str(server.bare), "--data-dir", str(data)],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip

    page = unguarded
    with serve(server.bare, data, tmp_path / "serve.log") as served:
        page.get(served.url("/"))
        wait_until(page, "the rows", lambda d: pages.rows(d) == ["broken", "drifting", "locked", "planted"])
        assert pages.cell(page, "drifting", "drift") == "drifted"
        assert pages.cell(page, "broken", "observed") == "corrupt state.json"
        assert "corrupt state.json" in pages.cell(page, "broken", "failure-cell")  # and why
        screenshot(page, screenshots, "escaping-planted-fleet")
        assert pages.cell(page, "planted", "failure-cell").count(PAYLOAD) == 2  # step and summary
        assert PAYLOAD in pages.cell(page, "locked", "lock-cell")  # the holder's host
        assert PAYLOAD in pages.cell(page, "planted", "last")  # the actor
        assert pages.cell(page, "planted", "drift") == "suspended"
        assert_nothing_ran(page)

        page.get(served.url("/environments/planted"))
        wait_until(page, "the trace", lambda d: "output: " + PAYLOAD in d.find_element(By.ID, "failure").text)
        assert page.find_element(By.ID, "outputs").text.count(PAYLOAD) == 2  # the key and the value
        failure = page.find_element(By.ID, "failure").text
        assert failure.count(PAYLOAD) >= 3  # failed step, summary, trace
        history = page.find_element(By.ID, "history").text
        assert history.count(PAYLOAD) >= 2  # the actor and the free text
        assert PAYLOAD in page.find_element(By.ID, "drift").text  # why it is suspended
        assert_nothing_ran(page)

        page.get(served.url("/environments/drifting"))
        wait_until(page, "the drift", lambda d: d.find_element(By.ID, "drift").text.count(PAYLOAD) == 3)
        assert_nothing_ran(page)

        page.get(served.url("/environments/locked"))
        wait_until(page, "the lock", lambda d: PAYLOAD in d.find_element(By.ID, "summary").text)
        assert_nothing_ran(page)

        # A name in the address is shown too (in the heading and the API's 404), as text.
        path_payload = "<img src=x onerror=\"window.__pwned='path'\">"
        page.get(served.url("/environments/" + urllib.parse.quote(path_payload, safe="")))
        wait_until(page, "the refusal", lambda d: d.find_element(By.ID, "problem").is_displayed())
        assert path_payload in page.find_element(By.ID, "env-name").text
        assert path_payload in page.find_element(By.ID, "problem").text
        assert_nothing_ran(page)
        screenshot(page, screenshots, "escaping-path")
