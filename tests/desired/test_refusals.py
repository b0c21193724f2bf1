"""SPEC section 7: every refusal names the file, line and field, and what would be accepted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.desired.helpers import BLUEPRINT, commit, env_yaml, load, make_repo, messages

ENV_HEAD = "apiVersion: reconciler/v1\nkind: Environment\nmetadata:\n  name: bad\nspec:\n"


def refusal(tmp_path: Path, content: str | bytes, name: str = "bad") -> list[str]:
    """Commit one bad environment beside good ones; the good ones still load."""
    repo = make_repo(tmp_path, {f"environments/{name}.yaml": content})
    snapshot = load(repo)
    assert {"web", "db"} <= set(snapshot.environments), "a bad file must not stop the others"
    assert name in snapshot.broken
    assert name not in snapshot.environments
    return [str(p) for p in snapshot.broken[name]]


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    found = refusal(tmp_path, ENV_HEAD + "  desiredState: [running\n  blueprint: tracker\n")
    assert len(found) == 1
    assert found[0].startswith("environments/bad.yaml:7:")
    assert "YAML syntax error" in found[0]


def test_duplicate_key_is_refused_at_the_second_occurrence(tmp_path: Path) -> None:
    found = refusal(tmp_path, ENV_HEAD + "  desiredState: running\n  desiredState: destroyed\n")
    assert found[0].startswith("environments/bad.yaml:7:3:")
    assert 'duplicate key "desiredState"' in found[0]


def test_wrong_type_names_the_field_and_the_value(tmp_path: Path) -> None:
    found = refusal(tmp_path, ENV_HEAD + "  desiredState: running\n  suspend: maybe\n")
    assert found == [
        "environments/bad.yaml:7:12: `spec.suspend`: Input should be a valid boolean, "
        "unable to interpret input (got 'maybe')"
    ]


def test_unknown_field_lists_the_accepted_ones(tmp_path: Path) -> None:
    found = refusal(tmp_path, ENV_HEAD + "  desiredState: running\n  desiredStat: running\n")
    assert found[0].startswith("environments/bad.yaml:7:3: unknown field `spec.desiredStat`")
    assert "desiredState" in found[0]
    assert "dependsOn" in found[0]


def test_missing_field_is_named(tmp_path: Path) -> None:
    found = refusal(tmp_path, ENV_HEAD + "  blueprint: tracker\n")
    assert any("missing required field `spec.desiredState`" in m for m in found)


def test_name_must_match_the_file_stem(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("other"))
    assert found == [
        "environments/bad.yaml:4:9: `metadata.name` is 'other' but the file is bad.yaml; "
        "the name must equal the file stem 'bad'"
    ]


def test_invalid_file_name_is_refused(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("Bad_Name"), name="Bad_Name")
    assert "not a valid environment name" in found[0]


def test_unknown_desired_state_lists_the_states(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("bad", state="runing"))
    assert found[0].startswith("environments/bad.yaml:6:17: `spec.desiredState`")
    assert "'running'" in found[0]
    assert "'destroyed'" in found[0]
    assert "(got 'runing')" in found[0]


def test_unknown_phase_lists_the_phases(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("bad", extra="  phases:\n    deploy: []\n"))
    assert found == [
        "environments/bad.yaml:9:5: unknown phase `deploy` in `spec.phases`; "
        "accepted: provision, configure, release, run, destroy, check"
    ]


def test_unknown_step_type_lists_the_step_types(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("bad", extra="  phases:\n    run:\n      - docker: {image: x}\n"))
    assert found[0].startswith("environments/bad.yaml:10:9: unknown step type `docker`")
    assert "shell, tofu, ansible, http" in found[0]


def test_step_with_two_kinds_is_refused(tmp_path: Path) -> None:
    extra = "  phases:\n    run:\n      - {shell: {run: x}, http: {url: y}}\n"
    found = refusal(tmp_path, env_yaml("bad", extra=extra))
    assert "exactly one of: shell, tofu, ansible, http (found: shell, http)" in found[0]
    assert found[0].startswith("environments/bad.yaml:10:")


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ("{tofu: {module: /etc}}", "tofu.module"),
        ("{tofu: {module: ../other}}", "tofu.module"),
        ("{tofu: {module: infra/../../x}}", "tofu.module"),
        ("{shell: {run: ls, cwd: /tmp}}", "shell.cwd"),
        ("{ansible: {playbook: ../site.yml}}", "ansible.playbook"),
        ("{ansible: {playbook: site.yml, inventory: /etc/hosts}}", "ansible.inventory"),
    ],
)
def test_path_outside_the_repository_is_refused(tmp_path: Path, step: str, field: str) -> None:
    found = refusal(tmp_path, env_yaml("bad", extra=f"  phases:\n    provision:\n      - {step}\n"))
    assert len(found) == 1
    assert found[0].startswith("environments/bad.yaml:10:")
    assert f"`{field}`" in found[0]
    assert "expected a path inside the repository" in found[0]


def test_symlink_escaping_the_repository_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    os.symlink("../../outside", repo / "infra" / "escape")
    commit(
        repo,
        {
            "environments/bad.yaml": env_yaml(
                "bad", extra="  phases:\n    provision: [{tofu: {module: infra/escape}}]\n"
            )
        },
    )
    snapshot = load(repo)
    assert "bad" in snapshot.broken
    assert "outside the repository" in str(snapshot.broken["bad"][0])
    assert "`tofu.module`" in str(snapshot.broken["bad"][0])


def test_symlink_inside_the_repository_is_followed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    os.symlink("vm", repo / "infra" / "current")
    commit(
        repo,
        {
            "environments/ok.yaml": env_yaml(
                "ok", extra="  phases:\n    provision: [{tofu: {module: infra/current}}]\n"
            )
        },
    )
    snapshot = load(repo)
    assert "ok" in snapshot.environments, messages(snapshot)


def test_file_over_one_mebibyte_is_refused_unparsed(tmp_path: Path) -> None:
    big = env_yaml("bad") + "# " + "x" * (1024 * 1024) + "\n"
    found = refusal(tmp_path, big)
    assert found[0].startswith("environments/bad.yaml:1:1: file is")
    assert "1 MiB" in found[0]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = ENV_HEAD + "  desiredState: running\n  vars:\n" + "".join(f"    {line}\n" for line in lines)
    started = time.monotonic()
    found = refusal(tmp_path, bomb)
    assert time.monotonic() - started < 10
    assert "too many YAML aliases" in found[0]
    assert found[0].startswith("environments/bad.yaml:")


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    extra = "  vars:\n    base: &b {a: 1}\n    copy: *b\n"
    repo = make_repo(tmp_path, {"environments/ok.yaml": env_yaml("ok", extra=extra)})
    snapshot = load(repo)
    assert snapshot.environments["ok"].vars["copy"] == {"a": 1}


def test_non_utf8_text_is_refused_with_its_position(tmp_path: Path) -> None:
    found = refusal(tmp_path, (ENV_HEAD + "  desiredState: running\n  vars: {x: caf").encode() + b"\xe9}\n")
    assert found == ["environments/bad.yaml:7:16: byte 0xe9 is not UTF-8; files must be UTF-8 encoded text"]


def test_unknown_dependency_is_refused_and_names_candidates(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("bad", extra="  dependsOn: [web, nope]\n"))
    assert found[0].startswith("environments/bad.yaml:8:20:")
    assert "`spec.dependsOn[1]`: no environment named 'nope'" in found[0]


def test_dependency_cycle_breaks_every_member_only(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path,
        {
            "environments/alpha.yaml": env_yaml("alpha", extra="  dependsOn: [beta]\n"),
            "environments/beta.yaml": env_yaml("beta", extra="  dependsOn: [alpha]\n"),
            "environments/gamma.yaml": env_yaml("gamma", extra="  dependsOn: [alpha]\n"),
        },
    )
    snapshot = load(repo)
    assert set(snapshot.broken) == {"alpha", "beta"}
    assert "gamma" in snapshot.environments
    assert "cycle: alpha -> beta -> alpha" in str(snapshot.broken["alpha"][0])
    assert str(snapshot.broken["alpha"][0]).startswith("environments/alpha.yaml:8:")


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    found = refusal(tmp_path, env_yaml("bad", extra="  dependsOn: [bad]\n"))
    assert "cycle: bad -> bad" in found[0]


def test_unknown_blueprint_is_refused(tmp_path: Path) -> None:
    content = env_yaml("bad").replace("blueprint: tracker", "blueprint: nope")
    found = refusal(tmp_path, content)
    assert found[0].startswith("environments/bad.yaml:7:14: `spec.blueprint`: 'nope' does not exist")


def test_invalid_blueprint_breaks_its_users_and_is_reported_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(
        repo,
        {
            "blueprints/tracker.yaml": (
                "apiVersion: reconciler/v1\nkind: Blueprint\nmetadata: {name: tracker}\n"
                "spec: {phases: {deploy: []}}\n"
            )
        },
    )
    snapshot = load(repo)
    assert set(snapshot.broken) == {"web", "db"}
    text = messages(snapshot)
    assert sum("unknown phase `deploy`" in m for m in text) == 1
    assert any(
        m.startswith("environments/web.yaml:7:14: `spec.blueprint`: 'tracker' is invalid") for m in text
    )


def test_invalid_template_syntax_is_refused(tmp_path: Path) -> None:
    extra = '  phases:\n    check: [{http: {url: "http://{{ outputs.ip "}}]\n'
    found = refusal(tmp_path, env_yaml("bad", extra=extra))
    assert found[0].startswith("environments/bad.yaml:9:")
    assert "`http.url`: invalid template syntax" in found[0]


def test_template_may_use_only_environment_vars_and_outputs(tmp_path: Path) -> None:
    extra = '  phases:\n    check: [{http: {url: "http://{{ secrets.host }}/"}}]\n'
    found = refusal(tmp_path, env_yaml("bad", extra=extra))
    assert "the template uses secrets; only environment.name, vars.NAME and outputs.NAME" in found[0]


def test_template_var_must_be_declared(tmp_path: Path) -> None:
    extra = '  phases:\n    check: [{http: {url: "http://x:{{ vars.http_prot }}/"}}]\n'
    found = refusal(tmp_path, env_yaml("bad", extra=extra))
    assert "vars.http_prot is not declared" in found[0]
    assert "http_port" in found[0]


def test_shell_run_is_not_checked_as_a_template(tmp_path: Path) -> None:
    extra = "  phases:\n    run: [{shell: {run: 'echo {{ anything }}'}}]\n"
    repo = make_repo(tmp_path, {"environments/ok.yaml": env_yaml("ok", extra=extra)})
    assert "ok" in load(repo).environments


def test_bad_config_is_reported_and_refuses_the_whole_snapshot(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nprun: true\n"})
    snapshot = load(repo)
    assert messages(snapshot)[0].startswith("reconciler.yaml:3:1: unknown field `prun`")
    # The environments still load, so validate reports them too; commands that act refuse (SPEC 2.4).
    assert set(snapshot.environments) == {"web", "db"}
    assert snapshot.config_refused is not None
    assert snapshot.config_refused.startswith("reconciler.yaml is invalid, so nothing is acted on")


def test_good_repository_has_no_problems(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    snapshot = load(repo)
    assert snapshot.problems == ()
    assert set(snapshot.environments) == {"web", "db"}
    assert snapshot.commit == git(repo, "rev-parse", "HEAD").strip()


def test_a_script_symlink_escaping_the_repository_breaks_only_its_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "scripts").mkdir(exist_ok=True)
    os.symlink("/etc/passwd", repo / "scripts" / "deploy.sh")
    commit(
        repo,
        {
            "environments/bad.yaml": env_yaml(
                "bad", extra="  phases:\n    release: [{shell: {run: ./scripts/deploy.sh}}]\n"
            ),
            "environments/good.yaml": env_yaml("good"),
        },
    )
    snapshot = load(repo)
    assert "good" in snapshot.environments
    assert "bad" in snapshot.broken
    assert "expected a path inside the repository" in str(snapshot.broken["bad"][0])


def test_environments_sharing_a_blueprint_are_each_refused_with_their_own_position(tmp_path: Path) -> None:
    # The blueprint's paths are probed once per load for all its users (issue 11): each user
    # must still get its own refusal, and a user whose vars differ its own template problems.
    blueprint = BLUEPRINT.replace("run: ./scripts/start.sh", "run: ./scripts/escape").replace(
        '{name: "{{ environment.name }}"}', '{name: "{{ vars.owner }}"}'
    )
    repo = make_repo(tmp_path, {"blueprints/tracker.yaml": blueprint})
    os.symlink("../../outside", repo / "scripts" / "escape")
    commit(repo, {"environments/owned.yaml": env_yaml("owned", extra="  vars: {owner: ops}\n")})
    snapshot = load(repo)
    assert sorted(snapshot.broken) == ["db", "owned", "web"]
    for name in ("db", "web"):
        (problem,) = snapshot.broken[name]
        assert problem.environment == name
        assert problem.path == "blueprints/tracker.yaml"
        assert "vars.owner is not declared" in problem.message
    (owned,) = snapshot.broken["owned"]
    assert owned.environment == "owned"
    assert (owned.path, owned.line) == ("blueprints/tracker.yaml", 10)
    assert "`phases.run[0]`" in owned.message
    assert "expected a path inside the repository" in owned.message
