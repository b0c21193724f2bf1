"""Loading a revision: blueprint merge, revisions and branches, work trees, and the parse cache."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from reconciler.desired.loader import (
    ParseCache,
    RevisionError,
    default_revision,
    desired_branch,
    load_snapshot,
    load_worktree,
    resolve_revision,
)
from reconciler.domain.states import Phase
from tests.conftest import git
from tests.desired.helpers import BLUEPRINT, commit, env_yaml, load, make_repo, messages


def test_environment_gets_blueprint_phases_except_its_own_and_vars_overlaid(tmp_path: Path) -> None:
    extra = "  vars: {http_port: 8080}\n  phases:\n    run: [{shell: {run: ./scripts/release.sh --fast}}]\n"
    repo = make_repo(tmp_path, {"environments/web.yaml": env_yaml("web", extra=extra)})
    web = load(repo).environments["web"]
    assert web.vars == {"http_port": 8080, "region": "eu"}
    assert web.steps(Phase.RUN)[0].shell is not None
    assert web.steps(Phase.RUN)[0].shell.run == "./scripts/release.sh --fast"
    assert web.steps(Phase.PROVISION)[0].tofu is not None
    assert web.steps(Phase.PROVISION)[0].tofu.module == "infra/vm"
    assert len(web.steps("check")) == 1


def test_empty_phase_overrides_the_blueprint(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path, {"environments/web.yaml": env_yaml("web", extra="  phases:\n    configure: []\n")}
    )
    web = load(repo).environments["web"]
    assert web.steps(Phase.CONFIGURE) == ()


def test_environment_without_blueprint_has_noop_phases(tmp_path: Path) -> None:
    content = env_yaml("solo").replace("  blueprint: tracker\n", "")
    repo = make_repo(tmp_path, {"environments/solo.yaml": content})
    solo = load(repo).environments["solo"]
    assert all(solo.steps(p) == () for p in Phase)
    assert set(solo.phase_hashes) == set(Phase)


def test_only_committed_files_count(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "environments" / "draft.yaml").write_text(env_yaml("draft"))
    assert "draft" not in load(repo).names
    assert "draft" in load_worktree(repo).environments
    assert load_worktree(repo).commit is None


def test_bad_worktree_file_is_reported_without_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "environments" / "web.yaml").write_text("spec: [\n")
    snapshot = load_worktree(repo)
    assert "web" in snapshot.broken
    assert "db" in snapshot.environments


def test_earlier_revision_is_loaded_from_git_not_the_checkout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    first = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, {"environments/db.yaml": None})
    assert "db" not in load(repo).names
    older = load(repo, "HEAD~1")
    assert "db" in older.environments
    assert older.commit == first


def test_bare_repository_loads(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    snapshot = load_snapshot(pygit2.Repository(str(bare)), "main")
    assert set(snapshot.environments) == {"web", "db"}


def test_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    repo = pygit2.Repository(str(make_repo(tmp_path)))
    with pytest.raises(RevisionError, match="'nope' does not name a commit"):
        resolve_revision(repo, "nope")


def test_default_branch_is_config_branch_else_head(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = pygit2.Repository(str(path))
    assert desired_branch(repo) == "main"
    assert default_revision(repo) == "refs/heads/main"
    git(path, "branch", "release")
    commit(path, {"reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nbranch: release\n"})
    assert desired_branch(repo) == "release"
    assert default_revision(repo) == "refs/heads/release"


def test_second_load_after_one_file_commit_equals_a_cold_load(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = pygit2.Repository(str(path))
    cache = ParseCache()
    before = load_snapshot(repo, cache=cache)
    commit(path, {"environments/web.yaml": env_yaml("web", state="destroyed")})
    warm = load_snapshot(repo, cache=cache)
    cold = load_snapshot(repo)
    assert warm == cold
    assert warm.environments["web"].desired_state == "destroyed"
    assert warm.environments["db"] is before.environments["db"], "an unchanged environment is reused"


def test_cache_notices_a_changed_referenced_path(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = pygit2.Repository(str(path))
    cache = ParseCache()
    before = load_snapshot(repo, cache=cache)
    commit(path, {"infra/vm/main.tf": "# changed\n"})
    warm = load_snapshot(repo, cache=cache)
    assert warm == load_snapshot(repo)
    assert (
        warm.environments["web"].phase_hashes[Phase.PROVISION]
        != before.environments["web"].phase_hashes[Phase.PROVISION]
    )


def test_cache_notices_a_blueprint_change_and_a_fix(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = pygit2.Repository(str(path))
    cache = ParseCache()
    load_snapshot(repo, cache=cache)
    commit(path, {"blueprints/tracker.yaml": "kind: Blueprint\n"})
    assert set(load_snapshot(repo, cache=cache).broken) == {"web", "db"}
    git(path, "revert", "--no-edit", "HEAD")
    fixed = load_snapshot(repo, cache=cache)
    assert set(fixed.environments) == {"web", "db"}
    assert fixed == load_snapshot(repo)


def test_problems_are_sorted_and_name_their_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"environments/zz.yaml": "kind: Environment\n", "environments/aa.yaml": "[\n"})
    snapshot = load(repo)
    assert [p.environment for p in snapshot.problems][:1] == ["aa"]
    assert messages(snapshot) == sorted(messages(snapshot))


def test_a_blueprint_template_reading_an_undeclared_var_refuses_only_the_environments_lacking_it(
    tmp_path: Path,
) -> None:
    # One blueprint, shared by every environment: what its templates say is worked out once per set of
    # declared vars, and each environment that lacks the var is refused at its own file.
    reads_port = BLUEPRINT.replace("vars: {http_port: 8000, region: eu}", "vars: {region: eu}").replace(
        "vars.http_port", "vars.port"
    )
    port = "  vars: {port: 8080}\n"
    repo = make_repo(
        tmp_path,
        {
            "blueprints/tracker.yaml": reads_port,
            "environments/web.yaml": env_yaml("web", extra=port),
            "environments/db.yaml": env_yaml("db"),
            "environments/queue.yaml": env_yaml("queue", extra="  vars: {port: 9090, size: 2}\n"),
            "environments/cache.yaml": env_yaml("cache", extra="  vars: {size: 2}\n"),
            "environments/api.yaml": env_yaml("api", extra=port),
        },
    )
    snapshot = load(repo)
    assert set(snapshot.environments) == {"web", "queue", "api"}
    assert set(snapshot.broken) == {"db", "cache"}
    for name, declared in (("db", "region"), ("cache", "region, size")):
        (problem,) = snapshot.broken[name]
        assert problem.path == "blueprints/tracker.yaml"
        assert problem.environment == name
        assert (problem.line, problem.col) == (12, 26)  # the blueprint's check URL
        assert problem.message.startswith("`http.url`: vars.port is not declared")
        assert f"(declared: {declared})" in problem.message
    web, queue = snapshot.environments["web"], snapshot.environments["queue"]
    assert web.phase_hashes["provision"] == queue.phase_hashes["provision"]  # reads no var
    assert web.phase_hashes["release"] != queue.phase_hashes["release"]  # a shell step reads them all
