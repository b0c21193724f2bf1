"""Phase hashes: a change re-runs the phases whose inputs it touched, and no others."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired.loader import load_worktree
from reconciler.domain.states import Phase
from tests.desired.helpers import commit, env_yaml, load, make_repo


def changed_phases(tmp_path: Path, files: dict[str, str | bytes | None], name: str = "web") -> set[Phase]:
    repo = make_repo(tmp_path)
    before = load(repo).environments[name].phase_hashes
    commit(repo, files)
    after = load(repo).environments[name].phase_hashes
    return {p for p in Phase if before[p] != after[p]}


def test_editing_a_module_file_changes_only_provision_and_destroy(tmp_path: Path) -> None:
    # destroy runs the same module, so it must see the change too.
    assert changed_phases(tmp_path, {"infra/vm/main.tf": "# edited\n"}) == {Phase.PROVISION, Phase.DESTROY}


def test_editing_a_release_script_changes_only_release(tmp_path: Path) -> None:
    assert changed_phases(tmp_path, {"scripts/release.sh": "#!/bin/sh\necho v2\n"}) == {Phase.RELEASE}


def test_editing_a_playbook_changes_only_configure(tmp_path: Path) -> None:
    assert changed_phases(tmp_path, {"ansible/site.yml": "- hosts: all\n"}) == {Phase.CONFIGURE}


def test_editing_a_role_next_to_the_playbook_changes_configure(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"ansible/roles/app/tasks/main.yml": "- debug: {msg: a}\n"})
    before = load(repo).environments["web"].phase_hashes
    commit(repo, {"ansible/roles/app/tasks/main.yml": "- debug: {msg: b}\n"})
    after = load(repo).environments["web"].phase_hashes
    assert {p for p in Phase if before[p] != after[p]} == {Phase.CONFIGURE}


def test_an_unrelated_file_changes_nothing(tmp_path: Path) -> None:
    assert changed_phases(tmp_path, {"README.md": "docs\n"}) == set()


def test_a_var_used_by_a_template_changes_that_phase_and_shell_phases(tmp_path: Path) -> None:
    extra = "  vars: {http_port: 8000, region: us}\n"
    changed = changed_phases(tmp_path, {"environments/web.yaml": env_yaml("web", extra=extra)})
    # region is read by no template; shell phases (release, run) see every var as RECONCILE_VAR_*.
    assert changed == {Phase.RELEASE, Phase.RUN}


def test_another_environments_change_does_not_touch_this_one(tmp_path: Path) -> None:
    assert changed_phases(tmp_path, {"environments/db.yaml": env_yaml("db", state="destroyed")}) == set()


def test_changing_a_blueprint_step_changes_that_phase(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    before = load(repo).environments["web"].phase_hashes
    blueprint = (
        (repo / "blueprints" / "tracker.yaml")
        .read_text()
        .replace("./scripts/start.sh", "./scripts/start.sh -v")
    )
    commit(repo, {"blueprints/tracker.yaml": blueprint})
    after = load(repo).environments["web"].phase_hashes
    assert {p for p in Phase if before[p] != after[p]} == {Phase.RUN}


def test_secret_value_never_enters_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = "  vars: {token: {fromEnv: TOKEN}}\n"
    repo = make_repo(tmp_path, {"environments/web.yaml": env_yaml("web", extra=extra)})
    monkeypatch.setenv("TOKEN", "one")
    first = load(repo).environments["web"]
    monkeypatch.setenv("TOKEN", "two")
    second = load(repo).environments["web"]
    assert first.vars["token"].from_env == "TOKEN"
    assert first.phase_hashes == second.phase_hashes


def test_work_tree_hashes_equal_commit_hashes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "scripts" / "release.sh").chmod(0o755)
    commit(repo, {})
    assert load_worktree(repo).environments["web"].phase_hashes == load(repo).environments["web"].phase_hashes
