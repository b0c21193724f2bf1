"""A fleet applied by the real ``reconcile`` in a real repository, served by a real uvicorn on loopback;
and for the browser tests, the system's Chromium, real daemons and a bare repository to push to."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest

from reconciler.engine.workspace import open_workspace
from reconciler.web.app import Endpoints, create_app
from reconciler.web.branches import StateBranchFleet
from reconciler.web.server import WebServer
from tests.daemon.kit import Daemons, Server, make_server
from tests.engine.conftest import STATE_REF, GitOpsRepo, counting_phases, env_file
from tests.engine.conftest import gitops as gitops  # noqa: PLC0414 - the fixture, re-exported
from tests.web.browser import absent_reason, chromium


@dataclass
class Served:
    server: WebServer
    url: str
    client: httpx.Client

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def json(self, path: str) -> dict[str, Any]:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


def serve(gitops: GitOpsRepo, host: str = "127.0.0.1", token: str | None = None) -> WebServer:
    fleet = StateBranchFleet(open_workspace(gitops.path, gitops.data))
    endpoints = Endpoints(healthy=lambda: (True, "ok"), metrics=lambda: "", fleet=fleet)
    server = WebServer(create_app(endpoints, token=token), host, 0)
    server.start()
    return server


@pytest.fixture
def served(fleet: GitOpsRepo) -> Iterator[Served]:
    server = serve(fleet)
    url = f"http://127.0.0.1:{server.port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield Served(server, url, client)
    finally:
        server.stop()


def labelled(name: str, labels: dict[str, str], phases: dict[str, object]) -> str:
    doc = json.loads(env_file(name, "running", phases=phases))
    doc["metadata"]["labels"] = labels
    return json.dumps(doc)


@pytest.fixture
def fleet(gitops: GitOpsRepo, tmp_path: Path) -> GitOpsRepo:
    """``api`` and ``web`` (team a) running, ``db`` (team b) failed in provision, all applied."""
    log = tmp_path / "side-effects.log"
    failing = {
        "provision": [
            {"name": "make the database", "shell": {"run": "echo 'disk full on /dev/db' >&2; exit 3"}}
        ]
    }
    gitops.commit(
        {
            "environments/web.yaml": labelled("web", {"team": "a", "tier": "front"}, counting_phases(log)),
            "environments/api.yaml": labelled("api", {"team": "a", "tier": "back"}, counting_phases(log)),
            "environments/db.yaml": labelled("db", {"team": "b", "tier": "back"}, failing),
        },
        "three environments",
    )
    gitops.reconcile("apply")
    return gitops


def rewrite_state(gitops: GitOpsRepo, name: str, change: dict[str, Any]) -> None:
    """A commit on the state branch that changes ``name``'s state.json as a hostile writer would."""
    repo = pygit2.Repository(str(gitops.path))
    tip = repo.references[STATE_REF].peel(pygit2.Commit)
    blob = repo[(tip.tree / name / "state.json").id]
    assert isinstance(blob, pygit2.Blob)
    doc = json.loads(blob.data)
    for key, value in change.items():
        target = doc
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    builder = repo.TreeBuilder(tip.tree)
    sub = repo.TreeBuilder(tip.tree / name)
    sub.insert("state.json", repo.create_blob(json.dumps(doc).encode()), pygit2.GIT_FILEMODE_BLOB)
    builder.insert(name, sub.write(), pygit2.GIT_FILEMODE_TREE)
    who = pygit2.Signature("mallory", "m@example.com")
    repo.create_commit(STATE_REF, who, who, f"{name}: rewritten by hand\n", builder.write(), [tip.id])


# -- the browser tests ----------------------------------------------------------------------------


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
    browser.get_log("browser")  # what an earlier test's page said as its server went away
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
