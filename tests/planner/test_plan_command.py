"""``reconcile plan`` over real repositories: what a user reads for each verdict, the PR view, exit codes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.domain import Configuring, Destroyed, Phase, Released, ReleaseFailed, Running
from tests.conftest import git

from .gitops import GitOps, environment, failed, held_lock


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    path = tmp_path / "gitops"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = GitOps(path)
    repo.write("scripts/release.sh", "#!/bin/sh\necho release\n")
    repo.write("environments/database.yaml", environment("database"))
    repo.write("environments/web.yaml", environment("web", dependsOn=["database"]))
    repo.commit("two environments")
    return repo


def converge(repo: GitOps, *names: str) -> None:
    for name in names:
        repo.observe(name, Running, hashes=repo.hashes(name))


def env_json(result_stdout: str, name: str) -> dict[str, object]:
    data = json.loads(result_stdout)
    found: dict[str, object] = next(e for e in data["environments"] if e["name"] == name)
    return found


# -- each verdict --------------------------------------------------------------------------


def test_fresh_repository_plans_create_and_every_phase(gitops: GitOps) -> None:
    result = gitops.plan()
    assert result.returncode == 0, result.stderr
    assert "database  (none) -> running: changes" in result.stdout
    assert "+ provision          not yet provisioned" in result.stdout
    assert "web       (none) -> running: waiting" in result.stdout
    assert "waiting for database" in result.stdout
    assert result.stdout.rstrip().endswith("2 environments: 1 to change, 1 waiting")


def test_converged_environments_report_no_changes(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    result = gitops.plan("--detailed-exitcode")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 environments: 2 converged" in result.stdout


def test_a_changed_script_reruns_release_and_run_only(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    gitops.write("scripts/release.sh", "#!/bin/sh\necho release v2\n")
    gitops.commit("release v2")
    result = gitops.plan("--format", "json", "--detailed-exitcode")
    assert result.returncode == 2
    database = env_json(result.stdout, "database")
    assert database["verdict"] == "changes"
    assert [a["phase"] for a in database["actions"]] == ["release", "run"]  # type: ignore[attr-defined]
    assert database["transitions"] == ["releasing", "released", "starting", "running"]
    assert database["reason"] == "release inputs changed"
    # web releases the same script, after its dependency has converged again.
    web = env_json(result.stdout, "web")
    assert web["verdict"] == "waiting"
    assert web["reason"] == "waiting for database"
    assert [a["phase"] for a in web["actions"]] == ["release", "run"]  # type: ignore[attr-defined]


def test_held_lock_is_waiting_and_names_the_holder(gitops: GitOps) -> None:
    converge(gitops, "database")
    gitops.observe("web", Configuring, hashes=gitops.hashes("web"), lock=held_lock())
    result = gitops.plan()
    assert "web       configuring -> running: waiting" in result.stdout
    assert "locked by build-7:999 until" in result.stdout


def test_expired_lock_is_recovered_then_retried(gitops: GitOps) -> None:
    converge(gitops, "database")
    lock = held_lock().model_copy(update={"expires_at": held_lock().acquired_at - timedelta(seconds=1)})
    gitops.observe("web", Configuring, hashes=gitops.hashes("web"), lock=lock)
    plan = env_json(gitops.plan("--format", "json").stdout, "web")
    assert plan["verdict"] == "changes"
    assert [(a["kind"], a["phase"]) for a in plan["actions"]][:2] == [  # type: ignore[attr-defined]
        ("recover", "configure"),
        ("phase", "configure"),
    ]


def test_failure_in_backoff_waits_and_exhausted_retries_block(gitops: GitOps) -> None:
    converge(gitops, "database")
    hashes = gitops.hashes("web")
    fresh = failed(Phase.RELEASE, attempt=1, phase_hash=hashes[Phase.RELEASE], ago=timedelta(seconds=1))
    gitops.observe("web", ReleaseFailed, hashes=hashes, failure=fresh)
    waiting = env_json(gitops.plan("--format", "json").stdout, "web")
    assert waiting["verdict"] == "waiting"
    assert waiting["retryAt"] is not None
    assert waiting["nextAttempt"] == 2
    assert "backing off until" in str(waiting["reason"])

    spent = failed(Phase.RELEASE, attempt=4, phase_hash=hashes[Phase.RELEASE], ago=timedelta(hours=1))
    gitops.observe("web", ReleaseFailed, hashes=hashes, failure=spent)
    result = gitops.plan()
    assert "web       release_failed -> running: blocked" in result.stdout
    assert "retries exhausted (3/3); fix the inputs or run `reconcile retry web`" in result.stdout


def test_fixing_the_failed_input_retries_at_once(gitops: GitOps) -> None:
    converge(gitops, "database")
    hashes = gitops.hashes("web")
    spent = failed(Phase.RELEASE, attempt=4, phase_hash=hashes[Phase.RELEASE], ago=timedelta(seconds=1))
    gitops.observe("web", ReleaseFailed, hashes=hashes, failure=spent)
    gitops.write("scripts/release.sh", "#!/bin/sh\necho fixed\n")
    gitops.write("environments/web.yaml", environment("web"))  # no dependency to wait for
    gitops.commit("fix the release script")
    plan = env_json(gitops.plan("--format", "json").stdout, "web")
    assert plan["verdict"] == "changes"
    assert plan["nextAttempt"] == 1
    assert "attempts reset" in str(plan["reason"])


def test_desired_below_observed_is_ahead(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    gitops.write("environments/web.yaml", environment("web", "provisioned", dependsOn=["database"]))
    gitops.commit("scale web back")
    result = gitops.plan("--detailed-exitcode")
    assert result.returncode == 0
    assert "web       running -> provisioned: ahead" in result.stdout
    assert "nothing is undone" in result.stdout


def test_suspended_shows_what_it_would_do(gitops: GitOps) -> None:
    converge(gitops, "database")
    gitops.write("environments/web.yaml", environment("web", dependsOn=["database"], suspend=True))
    gitops.commit("suspend")
    result = gitops.plan("--detailed-exitcode")
    assert result.returncode == 0  # a suspended environment changes nothing
    assert "web       (none) -> running: suspended" in result.stdout
    assert "+ provision" in result.stdout


def test_protected_is_never_destroyed(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    gitops.write("environments/database.yaml", environment("database", "destroyed", protected=True))
    gitops.commit("destroy database")
    result = gitops.plan()
    assert "database  running -> destroyed: protected" in result.stdout


def test_destroy_and_deleted_file(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    gitops.observe("old", Released, hashes={})
    gitops.observe("gone", Destroyed)
    gitops.write("environments/web.yaml", environment("web", "destroyed", dependsOn=["database"]))
    gitops.commit("tear web down")
    result = gitops.plan()
    assert "web       running -> destroyed: changes" in result.stdout
    assert "  - web  " in result.stdout  # a destroy stands out with terraform's mark
    assert "- destroy            desired state is destroyed" in result.stdout
    assert "old       released -> (no file): unmanaged" in result.stdout
    assert "gone      destroyed -> (no file): converged" in result.stdout

    gitops.write("reconciler.yaml", "apiVersion: reconciler/v1\nkind: Config\nprune: true\n")
    gitops.commit("prune")
    result = gitops.plan()
    assert "old       released -> (no file): changes" in result.stdout
    assert "environment file removed and prune is on" in result.stdout


def test_invalid_file_is_reported_with_its_location_and_fails(gitops: GitOps) -> None:
    gitops.write("environments/web.yaml", environment("web").replace("running", "runing"))
    gitops.commit("typo")
    result = gitops.plan()
    assert result.returncode == 1
    assert "web       (none) -> (invalid file): invalid" in result.stdout
    assert "environments/web.yaml:5:" in result.stdout
    # The other environment is still planned.
    assert "database  (none) -> running: changes" in result.stdout
    markdown = gitops.plan("--format", "markdown").stdout
    row = "| **web** | — | (invalid file) | ❌ invalid | left alone until the file is fixed (see below) |"
    assert row in markdown
    assert "#### ❌ Invalid files" in markdown
    assert "environments/web.yaml:5:" in markdown


def test_backticks_in_a_problem_cannot_close_the_markdown_code_block(gitops: GitOps) -> None:
    """A PR comment shows problems in a code block: a key of backticks must not end it early."""
    gitops.write("environments/web.yaml", environment("web") + '"```\\n## Merged, ship it": 1\n')
    gitops.commit("hostile key")
    markdown = gitops.plan("--format", "markdown").stdout
    lines = markdown.splitlines()
    start = lines.index("#### ❌ Invalid files") + 2
    fence = lines[start]
    assert set(fence) == {"`"} and len(fence) > 3
    end = lines.index(fence, start + 1)
    inside = "\n".join(lines[start + 1 : end])
    assert "```" in inside and "Merged, ship it" in inside
    assert not any(line.startswith("```") and line != fence for line in lines)


def test_corrupt_state_is_reported_and_left_alone(gitops: GitOps) -> None:
    converge(gitops, "database")
    gitops.plant_corrupt("web", "{not json")
    result = gitops.plan("--format", "json")
    assert result.returncode == 1
    plan = env_json(result.stdout, "web")
    assert plan["verdict"] == "corrupt"
    assert "refs/heads/reconciler/state:web/state.json" in str(plan["reason"])
    assert env_json(result.stdout, "database")["verdict"] == "converged"


# -- the pull-request view -----------------------------------------------------------------


def test_pull_request_view_marks_what_the_merge_changes(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    gitops.write("environments/cache.yaml", environment("cache", "provisioned"))
    gitops.commit("add a cache")  # already on main: not part of the pull request
    base = git(gitops.path, "rev-parse", "HEAD").strip()
    git(gitops.path, "checkout", "-q", "-b", "feature")
    gitops.write("scripts/release.sh", "#!/bin/sh\necho v2\n")
    gitops.write("environments/web.yaml", environment("web", dependsOn=["database"], suspend=False))
    head = gitops.commit("release v2")

    result = gitops.plan("--rev", head, "--base", base, "--format", "json")
    assert result.returncode == 0, result.stderr
    web, database, cache = (env_json(result.stdout, n) for n in ("web", "database", "cache"))
    assert web["fileChanged"] is True
    assert web["planChanged"] is True
    assert web["base"]["verdict"] == "converged"  # type: ignore[index]
    assert database["fileChanged"] is False
    assert database["planChanged"] is True  # the script it releases with changed
    assert cache["planChanged"] is False

    markdown = gitops.plan("--rev", head, "--base", base, "--format", "markdown").stdout
    assert f"merging `{head[:12]}` over `{base[:12]}`" in markdown
    assert "| environment | observed | desired | what will happen | why |" in markdown
    assert "**Plan:** 0 to create, 2 to change, 0 to destroy\n" in markdown
    web_row = "| **web** ✏️ | running | running | `~` ⏳ waiting, then release → run | waiting for database |"
    assert web_row in markdown
    # This state was recorded without the commit it was applied from: which inputs is not known.
    assert "| **database** | running | running | `~` 🔄 release → run | release inputs changed |" in markdown
    assert "**cache**" not in markdown
    pending = "1 other environment unaffected (1 with changes pending regardless of this pull request)"
    assert pending in markdown


def test_a_branch_behind_its_base_is_planned_as_its_merge(gitops: GitOps) -> None:
    """Issue 15: an environment added on main after the branch left is no "file removed" in the PR,
    even with prune (the bundled workflow plans head.sha over base.sha)."""
    converge(gitops, "database", "web")
    gitops.write("reconciler.yaml", "apiVersion: reconciler/v1\nkind: Config\nprune: true\n")
    fork = gitops.commit("prune")
    git(gitops.path, "checkout", "-q", "-b", "feature")
    gitops.write("environments/web.yaml", environment("web", dependsOn=["database"], suspend=True))
    head = gitops.commit("suspend web")
    git(gitops.path, "checkout", "-q", "main")
    gitops.write("environments/slow.yaml", environment("slow"))
    base = gitops.commit("add slow")
    converge(gitops, "slow")
    assert fork != base

    result = gitops.plan("--rev", head, "--base", base, "--format", "json")
    assert result.returncode == 0, result.stderr
    slow, web = env_json(result.stdout, "slow"), env_json(result.stdout, "web")
    assert slow["fileChanged"] is False
    assert slow["planChanged"] is False
    assert "destroy" not in json.dumps(slow)
    assert web["fileChanged"] is True
    markdown = gitops.plan("--rev", head, "--base", base, "--format", "markdown").stdout
    assert "**slow**" not in markdown
    assert "**Plan:** 0 to create, 0 to change, 0 to destroy; 1 unchanged" in markdown
    assert "To destroy" not in markdown and "`-`" not in markdown


def test_a_branch_that_conflicts_with_its_base_is_refused_with_the_paths(gitops: GitOps) -> None:
    base_commit = gitops.commit("start")
    git(gitops.path, "checkout", "-q", "-b", "feature")
    gitops.write("environments/web.yaml", environment("web", "configured", dependsOn=["database"]))
    head = gitops.commit("web configured only")
    git(gitops.path, "checkout", "-q", "main")
    gitops.write("environments/web.yaml", environment("web", "provisioned", dependsOn=["database"]))
    base = gitops.commit("web provisioned only")
    assert base != base_commit

    result = gitops.plan("--rev", head, "--base", base)
    assert result.returncode == 1
    assert "does not merge cleanly" in result.stderr
    assert "environments/web.yaml" in result.stderr


def test_pull_request_that_changes_nothing_says_so(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    base = git(gitops.path, "rev-parse", "HEAD").strip()
    gitops.write("README.md", "docs only\n")
    head = gitops.commit("docs")
    result = gitops.plan("--rev", head, "--base", base, "--format", "markdown", "--detailed-exitcode")
    assert result.returncode == 0
    assert "This change does not change what any environment will do." in result.stdout


def test_state_branch_only_on_the_remote_is_found_in_a_clone(gitops: GitOps, tmp_path: Path) -> None:
    """A CI checkout has the state branch as ``origin/reconciler/state`` only."""
    converge(gitops, "database", "web")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(gitops.path), str(clone))
    result = GitOps(clone).plan("--detailed-exitcode")
    assert result.returncode == 0, result.stdout
    assert "observed state from refs/remotes/origin/reconciler/state" in result.stdout
    assert "2 converged" in result.stdout


# -- work tree and exit codes --------------------------------------------------------------


def test_worktree_plans_uncommitted_files(gitops: GitOps) -> None:
    converge(gitops, "database", "web")
    gitops.write("environments/web.yaml", environment("web", "configured", dependsOn=["database"]))
    assert "web       running -> running: converged" in gitops.plan().stdout
    assert "web       running -> configured: ahead" in gitops.plan("--worktree").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--rev", "no-such-branch"), 1, "error: 'no-such-branch' does not name a commit"),
        (("--base", "no-such-branch"), 1, "error: 'no-such-branch' does not name a commit"),
        (("--worktree", "--rev", "HEAD"), 2, "error: --rev and --worktree exclude each other"),
        (("--format", "yaml"), 2, "Invalid value for '--format'"),
    ],
)
def test_exit_codes_of_bad_requests(gitops: GitOps, args: tuple[str, ...], code: int, message: str) -> None:
    result = gitops.plan(*args)
    assert result.returncode == code
    assert message in result.stderr


def test_not_a_repository_is_an_error(tmp_path: Path) -> None:
    result = GitOps(tmp_path).plan()
    assert result.returncode == 1
    assert "not a git repository" in result.stderr


def test_detailed_exitcode_is_2_with_changes(gitops: GitOps) -> None:
    assert gitops.plan().returncode == 0
    assert gitops.plan("--detailed-exitcode").returncode == 2


def test_a_large_plan_is_written_whole_with_its_exit_code(gitops: GitOps) -> None:
    """The process ends without the interpreter's teardown after a plan: nothing written is lost."""
    for i in range(400):
        gitops.write(f"environments/env-{i:03d}.yaml", environment(f"env-{i:03d}"))
    gitops.commit("a fleet")
    result = gitops.plan("--format", "json", "--detailed-exitcode")
    assert result.returncode == 2, result.stderr
    assert len(result.stdout) > 65536  # more than a pipe holds: written through to the end
    assert len(json.loads(result.stdout)["environments"]) == 402
    text = gitops.plan()
    assert text.returncode == 0, text.stderr
    assert text.stdout.rstrip().endswith("402 environments: 401 to change, 1 waiting")
