"""Which environments a new desired commit concerns: real repositories, commits made with the git CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from reconciler.daemon.wake import Wake, concerned
from reconciler.daemon.workqueue import WorkQueue
from reconciler.desired.loader import ParseCache, load_snapshot
from reconciler.desired.resolved import DesiredSnapshot
from tests.conftest import git
from tests.desired.helpers import commit, env_yaml, make_repo

pytestmark = pytest.mark.timeout(60)

OWN_SCRIPT = "  phases:\n    release: [{shell: {run: ./scripts/own.sh}}]\n"


def fleet(tmp_path: Path) -> Path:
    """web and db on the tracker blueprint; api depends on web, ui on api; solo has its own script."""
    return make_repo(
        tmp_path,
        {
            "environments/api.yaml": env_yaml("api", extra="  dependsOn: [web]\n"),
            "environments/ui.yaml": env_yaml("ui", extra="  dependsOn: [api]\n"),
            "environments/solo.yaml": (
                "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: solo}\n"
                f"spec:\n  desiredState: running\n{OWN_SCRIPT}"
            ),
            "scripts/own.sh": "#!/bin/sh\necho own\n",
            "README.md": "the fleet\n",
        },
    )


class Loads:
    """Loads of successive commits the way the daemon makes them: one repository, one cache."""

    def __init__(self, repo: Path, *, shared_cache: bool = True) -> None:
        self.repo = pygit2.Repository(str(repo))
        self.cache = ParseCache() if shared_cache else None
        self.last = self.load()

    def load(self) -> DesiredSnapshot:
        return load_snapshot(self.repo, "HEAD", cache=self.cache or ParseCache())

    def next(self) -> Wake:
        new = self.load()
        wake = concerned(self.repo, self.last, new)
        self.last = new
        return wake


@pytest.fixture(params=[True, False], ids=["shared-cache", "cold-cache"])
def shared(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_a_changed_environment_wakes_it_and_its_dependents_transitively(tmp_path: Path, shared: bool) -> None:
    repo = fleet(tmp_path)
    loads = Loads(repo, shared_cache=shared)
    commit(repo, {"environments/web.yaml": env_yaml("web", extra="  vars: {http_port: 9000}\n")})
    assert loads.next().names == {"web", "api", "ui"}
    commit(repo, {"environments/ui.yaml": env_yaml("ui", state="destroyed", extra="  dependsOn: [api]\n")})
    assert loads.next().names == {"ui"}


def test_a_blueprint_wakes_its_users_and_a_script_those_that_run_it(tmp_path: Path, shared: bool) -> None:
    repo = fleet(tmp_path)
    loads = Loads(repo, shared_cache=shared)
    commit(repo, {"scripts/own.sh": "#!/bin/sh\necho own v2\n"})
    assert loads.next().names == {"solo"}
    commit(repo, {"scripts/release.sh": "#!/bin/sh\necho release v2\n"})
    assert loads.next().names == {"web", "db", "api", "ui"}
    commit(repo, {"infra/vm/variables.tf": 'variable "size" {}\n'})
    assert loads.next().names == {"web", "db", "api", "ui"}, "a file inside a tofu module changes the module"
    blueprint = (repo / "blueprints/tracker.yaml").read_text().replace("region: eu", "region: us")
    commit(repo, {"blueprints/tracker.yaml": blueprint})
    assert loads.next().names == {"web", "db", "api", "ui"}


def test_a_file_no_environment_reads_wakes_nobody(tmp_path: Path, shared: bool) -> None:
    repo = fleet(tmp_path)
    loads = Loads(repo, shared_cache=shared)
    commit(repo, {"README.md": "the fleet, documented\n", "docs/notes.md": "notes\n"})
    assert loads.next().names == set()
    commit(repo, {}, "an empty commit")
    assert loads.next().names == set()


def test_a_path_a_step_may_read_that_appears_wakes_it(tmp_path: Path) -> None:
    """A word of ``shell.run`` counts once the file exists: its appearing changes the phase hash."""
    repo = make_repo(
        tmp_path,
        {
            "environments/solo.yaml": (
                "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: solo}\n"
                "spec:\n  desiredState: running\n  phases:\n    run: [{shell: {run: sh tools/go.sh}}]\n"
            )
        },
        base=False,
    )
    loads = Loads(repo)
    commit(repo, {"tools/go.sh": "echo go\n"})
    assert loads.next().names == {"solo"}


def test_a_script_reached_through_a_symlink_wakes_its_users_when_the_target_changes(tmp_path: Path) -> None:
    repo = fleet(tmp_path)
    commit(repo, {"scripts/own.sh": None, "shared/own.sh": "#!/bin/sh\necho shared\n"})
    os.symlink("../shared/own.sh", repo / "scripts/own.sh")
    commit(repo, {})
    loads = Loads(repo)
    commit(repo, {"shared/own.sh": "#!/bin/sh\necho shared v2\n"})
    assert loads.next().names == {"solo"}


def test_a_deleted_environment_wakes_it_and_what_depended_on_it(tmp_path: Path, shared: bool) -> None:
    repo = fleet(tmp_path)
    loads = Loads(repo, shared_cache=shared)
    commit(repo, {"environments/api.yaml": None})
    wake = loads.next()
    assert wake.names == {"api", "ui"}, "ui now names an unknown dependency: its refusal is news"
    assert "ui" in loads.last.broken


def test_a_new_environment_and_a_fixed_broken_one_are_woken(tmp_path: Path, shared: bool) -> None:
    repo = fleet(tmp_path)
    commit(repo, {"environments/bad.yaml": "apiVersion: reconciler/v1\nkind: Environment\nspec: [\n"})
    loads = Loads(repo, shared_cache=shared)
    commit(repo, {"environments/new.yaml": env_yaml("new"), "environments/bad.yaml": env_yaml("bad")})
    assert loads.next().names == {"new", "bad"}


def test_reconciler_yaml_wakes_everyone_only_for_settings_that_decide_plans(tmp_path: Path) -> None:
    repo = fleet(tmp_path)
    loads = Loads(repo)
    commit(repo, {"reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nidentity: {name: bot}\n"})
    assert loads.next().names == set(), "who commits changes no plan"
    commit(repo, {"reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nprune: true\n"})
    wake = loads.next()
    assert wake.everything and "reconciler.yaml" in wake.reason


def test_in_doubt_everything(tmp_path: Path) -> None:
    repo = fleet(tmp_path)
    git_repo = pygit2.Repository(str(repo))
    first = load_snapshot(git_repo, "HEAD")
    assert concerned(git_repo, None, first).everything
    commit(repo, {"environments/web.yaml": env_yaml("web", state="destroyed")})
    ahead = load_snapshot(git_repo, "HEAD")
    # History rewritten: the branch reset to a commit that does not descend from the one loaded.
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    commit(repo, {"environments/db.yaml": env_yaml("db", state="destroyed")}, "rewritten")
    rewritten = load_snapshot(git_repo, "HEAD")
    wake = concerned(git_repo, ahead, rewritten)
    assert wake.everything and "history" in wake.reason


def test_every_environment_whose_phase_hashes_or_state_changed_is_woken(tmp_path: Path) -> None:
    """Over a run of commits, nothing whose resolved definition changed is ever left asleep."""
    repo = fleet(tmp_path)
    loads = Loads(repo)
    changes: list[dict[str, str | bytes | None]] = [
        {"scripts/start.sh": "#!/bin/sh\necho start v2\n"},
        {"environments/solo.yaml": env_yaml("solo")},
        {"ansible/roles/web/tasks/main.yml": "- debug: {msg: hi}\n"},
        {"environments/db.yaml": env_yaml("db", extra="  dependsOn: [solo]\n")},
        {"scripts/own.sh": "#!/bin/sh\necho own v3\n"},
        {"infra/vm/main.tf": 'resource "null_resource" "vm2" {}\n'},
    ]
    for files in changes:
        before = loads.last
        commit(repo, files)
        wake = loads.next()
        after = loads.last
        assert wake.names is not None

        def facts(snapshot: DesiredSnapshot, name: str) -> object:
            env = snapshot.environments.get(name)
            return None if env is None else (dict(env.phase_hashes), env.desired_state, env.depends_on)

        names = after.environments.keys() | before.environments.keys()
        moved = {name for name in names if facts(after, name) != facts(before, name)}
        assert moved <= wake.names, (files, moved - wake.names)


def test_the_background_lane_waits_for_the_front_lane_and_keeps_a_worker_free() -> None:
    q = WorkQueue(background_limit=1)
    q.add_all(["a", "b", "c"], background=True)
    q.add("pushed")
    assert q.depth() == 4
    assert q.get() == "pushed", "what a push concerns goes first"
    assert q.get() == "a"
    q.add("c")  # wanted now: leaves the background lane
    assert q.get() == "c"
    q.add("later")
    assert q.get() == "later", "the background lane is full (a is held): the front lane still flows"
    assert q.depth() == 1
    q.done("a")
    assert q.get() == "b"
    for name in ("pushed", "c", "later", "b"):
        q.done(name)
    assert q.depth() == 0
