"""``-l/--selector`` on plan, apply and status, as a user types it (SPEC 5)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.conftest import GitOpsRepo, counting_phases, env_file


def _fleet(gitops: GitOpsRepo, log: Path) -> None:
    phases = counting_phases(log)
    gitops.commit(
        {
            "environments/web.yaml": env_file("web", phases=phases).replace(
                '"name": "web"', '"name": "web", "labels": {"team": "shop", "tier": "front"}'
            ),
            "environments/db.yaml": env_file("db", phases=phases).replace(
                '"name": "db"', '"name": "db", "labels": {"team": "shop", "tier": "db"}'
            ),
            "environments/ci.yaml": env_file("ci", phases=phases).replace(
                '"name": "ci"', '"name": "ci", "labels": {"team": "tools"}'
            ),
        }
    )


def test_apply_status_and_plan_act_on_the_selected_environments_only(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    _fleet(gitops, log)

    plan = json.loads(gitops.reconcile("plan", "-l", "team=shop,tier!=db", "--format", "json").stdout)
    assert [e["name"] for e in plan["environments"]] == ["web"]

    gitops.reconcile("apply", "--selector", "team=shop", check=True)
    touched = {line.split()[1] for line in log.read_text().splitlines()}
    assert touched == {"web", "db"}  # ci was left alone
    assert not [t for t in gitops.transitions() if t.startswith("ci:")]

    status = json.loads(gitops.reconcile("status", "-l", "team=shop", "--format", "json", check=True).stdout)
    assert [(r["name"], r["labels"]["tier"], r["converged"]) for r in status["environments"]] == [
        ("db", "db", True),
        ("web", "front", True),
    ]
    table = gitops.reconcile("status", "-l", "team=tools", check=True).stdout
    assert "ci" in table and "web" not in table
    rest = json.loads(gitops.reconcile("plan", "-l", "team=tools", "--format", "json").stdout)
    assert [(e["name"], e["verdict"]) for e in rest["environments"]] == [("ci", "changes")]


def test_names_and_a_selector_together_take_the_names_that_match(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    _fleet(gitops, log)
    gitops.reconcile("apply", "web", "ci", "-l", "team=shop", check=True)
    assert {line.split()[1] for line in log.read_text().splitlines()} == {"web"}
    unknown = gitops.reconcile("apply", "nope", "-l", "team=shop")
    assert unknown.returncode == 1 and "unknown environment(s): nope" in unknown.stderr


def test_a_selector_matching_nothing_says_so_and_changes_nothing(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    _fleet(gitops, log)
    for command in ("apply", "status", "plan"):
        out = gitops.reconcile(command, "-l", "team=nobody")
        assert out.returncode == 0, (command, out.stderr)
        assert "no environment matches the selector 'team=nobody'" in out.stderr, command
    assert not log.exists() and gitops.transitions() == []
    empty = json.loads(gitops.reconcile("status", "-l", "team=nobody", "--format", "json", check=True).stdout)
    assert empty["environments"] == []


def test_bad_selector_syntax_is_a_usage_error_saying_what_is_accepted(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web")})
    for command in ("apply", "status", "plan"):
        for bad in ("team", "my team=shop", "tier in (db)"):
            out = gitops.reconcile(command, "-l", bad)
            assert out.returncode == 2, (command, bad, out.stderr)
            assert "key=value[,key=value...]" in " ".join(out.stderr.split()), (command, bad)
    assert gitops.transitions() == []
