"""Hostile desired state through the real CLI (SPEC section 7, last paragraph; 2.4).

Every value is bounded when a file is loaded, so ``validate`` names the file,
line, field and what would be accepted, and nothing it accepts can crash
``apply``. A bad file is its environment's refusal alone: the good one beside
it still plans and applies. An invalid ``reconciler.yaml`` stops everything,
and state is never committed onto the desired branch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, env_file

pytestmark = pytest.mark.timeout(180)

SHELL = {"run": [{"shell": {"run": "true"}}]}


def raw_env(name: str, spec: str) -> str:
    """An environment file as a person might write it (``spec`` indented by two spaces)."""
    return f"apiVersion: reconciler/v1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n{spec}"


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


# name -> (file text, "line:col", what the refusal says)
HOSTILE: dict[str, tuple[str, str, str]] = {
    "huge-int": (
        raw_env("huge-int", "  desiredState: running\n  timeoutSeconds: " + "9" * 5000 + "\n"),
        "7:19",
        "`spec.timeoutSeconds`: the integer 999999999999999999999999... (5000 digits) does not fit 64 bits; "
        "accepted: -9223372036854775808 to 9223372036854775807",
    ),
    "int-tag": (
        raw_env("int-tag", "  desiredState: running\n  timeoutSeconds: !!int x\n"),
        "7:19",
        "`spec.timeoutSeconds`: tags are not allowed (found `!!int`); "
        "write the plain value (in quotes if it must stay a string)",
    ),
    "python-tag": (
        raw_env(
            "python-tag",
            "  desiredState: running\n  vars: {x: !!python/object/apply:os.system [touch pwned]}\n",
        ),
        "7:13",
        "`spec.vars.x`: tags are not allowed (found `!!python/object/apply:os.system`)",
    ),
    "deep-scalar": (
        raw_env("deep-scalar", f"  desiredState: running\n  timeoutSeconds: {nested(300)}\n"),
        "7:",
        "nested more than 64 levels deep; at most 64 levels of lists and mappings are accepted",
    ),
    "deep-vars": (
        raw_env(
            "deep-vars",
            f"  desiredState: running\n  vars: {{x: {nested(1000)}}}\n"
            "  phases: {run: [{shell: {run: 'true'}}]}\n",
        ),
        "7:",
        "`spec.vars.x[0][0]",
    ),
    "huge-timeout": (
        raw_env("huge-timeout", "  desiredState: running\n  timeoutSeconds: 1e20\n"),
        "7:19",
        "`spec.timeoutSeconds`: Input should be an integer that fits 64 bits; "
        "accepted: a duration in seconds, at most 604800 (7 days) (got 1e+20)",
    ),
    "huge-backoff": (
        raw_env("huge-backoff", "  desiredState: running\n  retry: {backoffSeconds: 1e20}\n"),
        "7:",
        "`spec.retry.backoffSeconds`: Input should be less than or equal to 604800; "
        "accepted: a duration in seconds, at most 604800 (7 days) (got 1e+20)",
    ),
    "infinite-http": (
        raw_env(
            "infinite-http",
            "  desiredState: running\n  phases:\n"
            "    check: [{http: {url: 'http://x', timeoutSeconds: .inf}}]\n",
        ),
        "8:",
        "is not a finite number",
    ),
    "env-equals": (
        raw_env(
            "env-equals",
            "  desiredState: running\n  phases: {run: [{shell: {run: 'true', env: {A=B: x}}}]}\n",
        ),
        "7:",
        "`spec.phases.run[0].shell.env.A=B`: an environment variable name is letters, digits and '_'",
    ),
    "env-empty": (
        raw_env(
            "env-empty", "  desiredState: running\n  phases: {run: [{shell: {run: 'true', env: {'': x}}}]}\n"
        ),
        "7:",
        "an environment variable name is letters, digits and '_', not starting with a digit "
        "(no '=', space or empty name)",
    ),
    "nul-var": (
        raw_env(
            "nul-var",
            '  desiredState: running\n  vars: {x: "a\\0b"}\n  phases: {run: [{shell: {run: "true"}}]}\n',
        ),
        "7:13",
        "`spec.vars.x`: a string may not hold a NUL character (\\0); remove it",
    ),
    "nul-run": (
        raw_env("nul-run", '  desiredState: running\n  phases: {run: [{shell: {run: "true\\x00"}}]}\n'),
        "7:",
        "`spec.phases.run[0].shell.run`: a string may not hold a NUL character",
    ),
    "tabs": (
        raw_env("tabs", "  desiredState: running\n\tsuspend: false\n"),
        "7:1",
        "YAML is indented with spaces, never tabs: indent with spaces",
    ),
}


@pytest.fixture
def hostile(gitops: GitOpsRepo, tmp_path: Path) -> GitOpsRepo:
    """A good environment beside every hostile file of ``HOSTILE``."""
    files = {f"environments/{name}.yaml": text for name, (text, _, _) in HOSTILE.items()}
    files["environments/good.yaml"] = env_file("good", phases=SHELL)
    gitops.commit(files, "one good, many hostile")
    return gitops


def test_validate_refuses_each_hostile_value_naming_file_line_field_and_what_is_accepted(
    hostile: GitOpsRepo,
) -> None:
    out = hostile.reconcile("validate")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    for name, (_, where, says) in HOSTILE.items():
        mine = [line for line in lines if line.startswith(f"environments/{name}.yaml:")]
        assert len(mine) == 1, (name, mine)
        assert mine[0].startswith(f"environments/{name}.yaml:{where}"), mine[0]
        assert says in mine[0], mine[0]
    assert not [line for line in lines if line.startswith("environments/good.yaml")]
    assert f"{len(HOSTILE)} environment(s) will be left alone until fixed" in out.stderr


def test_plan_and_apply_act_on_the_good_environment_and_leave_every_hostile_one_alone(
    hostile: GitOpsRepo,
) -> None:
    plan = hostile.reconcile("plan", "--format", "json")
    assert "Traceback" not in plan.stderr
    assert plan.returncode in (0, 1), plan.stderr
    planned = {p["name"] for p in json.loads(plan.stdout)["environments"]}
    assert "good" in planned

    apply = hostile.reconcile("apply")
    assert "Traceback" not in apply.stderr
    assert apply.returncode == 1  # the hostile files are reported as problems
    assert hostile.state("good")["state"] == "running"
    for name in HOSTILE:
        assert hostile.transitions(name) == [], name
    assert not (hostile.path / "pwned").exists()
    assert not Path("pwned").exists()
    # Nothing is left locked, and a second apply finds nothing to do for the good one.
    again = hostile.reconcile("apply", "good")
    assert again.returncode == 0, again.stderr
    assert hostile.state("good")["lock"] is None


def test_a_bad_blueprint_breaks_only_its_users(gitops: GitOpsRepo) -> None:
    blueprint = (
        "apiVersion: reconciler/v1\nkind: Blueprint\nmetadata: {name: deep}\n"
        f"spec:\n  vars: {{x: {nested(500)}}}\n  phases: {{run: [{{shell: {{run: 'true'}}}}]}}\n"
    )
    gitops.commit(
        {
            "blueprints/deep.yaml": blueprint,
            "environments/user.yaml": raw_env("user", "  desiredState: running\n  blueprint: deep\n"),
            "environments/good.yaml": env_file("good", phases=SHELL),
        }
    )
    out = gitops.reconcile("validate")
    assert out.returncode == 1
    assert "blueprints/deep.yaml:5:" in out.stdout
    assert "nested more than 64 levels deep" in out.stdout
    assert "environments/user.yaml:7:14: `spec.blueprint`: 'deep' is invalid (see blueprints/deep.yaml)" in (
        out.stdout
    )
    apply = gitops.reconcile("apply")
    assert "Traceback" not in apply.stderr
    assert gitops.state("good")["state"] == "running"
    assert gitops.transitions("user") == []


def test_an_invalid_reconciler_yaml_stops_plan_and_apply_instead_of_acting_with_defaults(
    gitops: GitOpsRepo,
) -> None:
    gitops.commit(
        {
            "reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nprune: maybe\n",
            "environments/good.yaml": env_file("good", phases=SHELL),
        }
    )
    validate = gitops.reconcile("validate")
    assert validate.returncode == 1
    assert "reconciler.yaml:3:8: `prune`: Input should be a valid boolean" in validate.stdout

    plan = gitops.reconcile("plan")
    assert plan.returncode == 1
    assert "reconciler.yaml is invalid, so nothing is acted on until it is fixed" in plan.stderr
    assert "reconciler.yaml:3:8" in plan.stderr

    apply = gitops.reconcile("apply")
    assert apply.returncode == 1
    assert "reconciler.yaml is invalid, so nothing is acted on until it is fixed" in apply.stderr
    assert "Traceback" not in apply.stderr
    assert gitops.transitions() == []

    gitops.commit({"reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nprune: false\n"}, "fix")
    assert gitops.reconcile("apply").returncode == 0
    assert gitops.state("good")["state"] == "running"


@pytest.mark.parametrize(
    ("state_ref", "says"),
    [
        ("refs/heads/main", "'refs/heads/main' is the desired-state branch"),
        ("main", "'main' is not a valid ref under refs/"),
        ("refs/heads/a..b", "is not a valid ref under refs/"),
        ("refs/remotes/origin/state", "is a remote-tracking ref, which every fetch overwrites"),
    ],
)
def test_a_state_ref_on_the_desired_branch_or_outside_refs_is_refused_and_nothing_is_committed(
    gitops: GitOpsRepo, state_ref: str, says: str
) -> None:
    gitops.commit(
        {
            "reconciler.yaml": f"apiVersion: reconciler/v1\nkind: Config\nstateRef: {state_ref}\n",
            "environments/good.yaml": env_file("good", phases=SHELL),
        }
    )
    main_before = git(gitops.path, "rev-parse", "refs/heads/main").strip()
    validate = gitops.reconcile("validate")
    assert validate.returncode == 1
    line = next(line for line in validate.stdout.splitlines() if line.startswith("reconciler.yaml:"))
    assert line.startswith("reconciler.yaml:3:11: `stateRef`: "), line
    assert says in line
    assert "accepted: a ref under refs/ other than the desired-state branch" in line

    apply = gitops.reconcile("apply")
    assert apply.returncode == 1
    assert "reconciler.yaml is invalid" in apply.stderr
    assert git(gitops.path, "rev-parse", "refs/heads/main").strip() == main_before
    assert git(gitops.path, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]


def test_a_configured_branch_is_the_desired_one_too(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {
            "reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nbranch: prod\n"
            "stateRef: refs/heads/prod\n"
        }
    )
    out = gitops.reconcile("validate")
    assert out.returncode == 1
    assert "`stateRef`: 'refs/heads/prod' is the desired-state branch" in out.stdout
